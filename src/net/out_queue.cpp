#include "net/out_queue.h"

#include <algorithm>

namespace pdctl::net::detail {

namespace {
constexpr size_t kCoalesceBytes = 64 * 1024;  // small writes join the last pending chunk
constexpr size_t kMaxBufsPerWrite = 64;
constexpr size_t kCopyBodyBelow = 4096;  // a small body tail is cheaper copied than moved
}  // namespace

void OutQueue::append(std::string_view bytes) {
  if (bytes.empty()) return;
  queued_ += bytes.size();
  if (!pending_.empty()) {
    Chunk& back = pending_.back();
    if (back.data.size() - back.off + bytes.size() <= kCoalesceBytes) {
      back.data.append(bytes);
      return;
    }
  }
  pending_.push_back(Chunk{std::string(bytes), 0});
}

int OutQueue::write(std::string_view a, std::string_view b, std::string_view c) {
  std::string_view parts[3] = {a, b, c};
  size_t done = 0;
  if (!in_flight_ && pending_.empty()) {
    uv_buf_t bufs[3];
    unsigned n = 0;
    for (auto p : parts) {
      if (!p.empty()) bufs[n++] = uv_buf_init(const_cast<char*>(p.data()), static_cast<unsigned>(p.size()));
    }
    if (n == 0) return 0;
    int r = uv_try_write(stream_, bufs, n);
    if (r >= 0) {
      done = static_cast<size_t>(r);
    } else if (r != UV_EAGAIN && r != UV_ENOSYS) {
      return r;
    }
  }
  for (auto p : parts) {
    if (done >= p.size()) {
      done -= p.size();
      continue;
    }
    append(p.substr(done));
    done = 0;
  }
  return start_write();
}

int OutQueue::write_owned(std::string_view head, std::string&& body) {
  size_t done = 0;
  if (!in_flight_ && pending_.empty()) {
    uv_buf_t bufs[2];
    unsigned n = 0;
    if (!head.empty()) bufs[n++] = uv_buf_init(const_cast<char*>(head.data()), static_cast<unsigned>(head.size()));
    if (!body.empty()) bufs[n++] = uv_buf_init(body.data(), static_cast<unsigned>(body.size()));
    if (n == 0) return 0;
    int r = uv_try_write(stream_, bufs, n);
    if (r >= 0) {
      done = static_cast<size_t>(r);
    } else if (r != UV_EAGAIN && r != UV_ENOSYS) {
      return r;
    }
  }
  if (done < head.size()) {
    append(head.substr(done));
    done = 0;
  } else {
    done -= head.size();
  }
  if (done < body.size()) {
    size_t left = body.size() - done;
    if (left < kCopyBodyBelow) {
      append(std::string_view(body).substr(done));
    } else {
      queued_ += left;
      pending_.push_back(Chunk{std::move(body), done});
    }
  }
  return start_write();
}

int OutQueue::start_write() {
  if (in_flight_ || pending_.empty()) return 0;
  size_t n = std::min(pending_.size(), kMaxBufsPerWrite);
  for (size_t i = 0; i < n; ++i) {
    flight_.push_back(std::move(pending_.front()));
    pending_.pop_front();
  }
  // Pointers are taken only now: moving a short string (SSO) moves its bytes.
  bufs_.clear();
  flight_bytes_ = 0;
  for (Chunk& c : flight_) {
    size_t len = c.data.size() - c.off;
    bufs_.push_back(uv_buf_init(c.data.data() + c.off, static_cast<unsigned>(len)));
    flight_bytes_ += len;
  }
  int r = uv_write(&req_, stream_, bufs_.data(), static_cast<unsigned>(bufs_.size()), &OutQueue::on_write);
  if (r < 0) {
    queued_ -= flight_bytes_;
    flight_.clear();
    flight_bytes_ = 0;
    return r;
  }
  in_flight_ = true;
  return 0;
}

void OutQueue::on_write(uv_write_t* req, int status) {
  auto* self = static_cast<OutQueue*>(req->data);
  self->in_flight_ = false;
  self->queued_ -= self->flight_bytes_;
  self->flight_bytes_ = 0;
  self->flight_.clear();
  if (status == 0) status = self->start_write();
  self->on_written_(self->owner_, status);
}

}  // namespace pdctl::net::detail

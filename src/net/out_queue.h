#pragma once
// Internal to src/net: the bytes waiting to go out on one stream, in order. A write tries
// uv_try_write first (no copy when the kernel takes everything); the rest is kept (copied
// once, or moved when the caller gives up a string) and sent by one uv_write at a time,
// many buffers per call (writev).
#include <cstddef>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include <uv.h>

namespace pdctl::net::detail {

class OutQueue {
 public:
  // `on_written(owner, status)` runs after each uv_write completes: status < 0 is an error
  // (UV_ECANCELED when the stream was closed); the owner then closes its stream.
  using Callback = void (*)(void* owner, int status);

  OutQueue(uv_stream_t* stream, void* owner, Callback on_written)
      : stream_(stream), owner_(owner), on_written_(on_written) {
    req_.data = this;
  }
  OutQueue(const OutQueue&) = delete;
  OutQueue& operator=(const OutQueue&) = delete;

  // Queues the parts after everything before them. Returns 0, or the libuv error with
  // which the socket refused (the owner then closes the connection).
  int write(std::string_view a, std::string_view b = {}, std::string_view c = {});
  // As write(head, body), but `body` is moved into the queue rather than copied.
  int write_owned(std::string_view head, std::string&& body);

  // Bytes accepted but not yet taken by the kernel.
  size_t queued() const { return queued_; }
  bool idle() const { return queued_ == 0; }

 private:
  struct Chunk {
    std::string data;
    size_t off = 0;
  };
  void append(std::string_view bytes);
  int start_write();
  static void on_write(uv_write_t* req, int status);

  uv_stream_t* stream_;
  void* owner_;
  Callback on_written_;
  uv_write_t req_{};
  std::deque<Chunk> pending_;
  std::vector<Chunk> flight_;  // owned by the uv_write in flight
  std::vector<uv_buf_t> bufs_;
  size_t flight_bytes_ = 0;
  size_t queued_ = 0;  // pending + in flight
  bool in_flight_ = false;
};

}  // namespace pdctl::net::detail

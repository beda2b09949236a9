#include "roles/router/regular_request.h"

#include <charconv>

#include <fmt/format.h>

#include "roles/router/retry.h"

namespace pdctl::router {
namespace {

// Bodies up to this size with a Content-Length are sent whole; larger ones stream.
constexpr uint64_t kMaxWholeBody = 8u << 20;

std::optional<uint64_t> content_length(const net::Headers& h) {
  const std::string* v = h.find("Content-Length");
  if (v == nullptr) return std::nullopt;
  uint64_t n = 0;
  auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
  if (ec != std::errc() || p != v->data() + v->size()) return std::nullopt;
  return n;
}

}  // namespace

RegularRequest::~RegularRequest() { call_.cancel(); }

void RegularRequest::start_attempt() {
  TimePoint now = ctx_.now();
  auto pick = ctx_.core.pick_worker(in_.text, now);
  if (!pick) {
    attempt_failed(AttemptResult::http(503), Reply::error(503, pick.status().message()));
    return;
  }
  worker_ = pick->worker;
  load_ = std::move(pick->load);
  auto up = ctx_.upstreams.get(worker_->url());
  if (!up) {
    load_.release();
    reply(Reply::error(502, up.status().message()), "bad_worker_url");
    return;
  }
  status_ = 0;
  mode_ = Mode::kWhole;
  headers_.clear();
  buffered_.clear();

  net::ClientRequest req;
  req.method = "POST";
  req.target = (*up)->prefix + in_.target;
  req.headers = in_.headers;
  // Copied, not moved: a retry sends it again.
  req.body = in_.body;
  req.response_header_timeout = ctx_.request_timeout();
  req.idle_read_timeout = ctx_.request_timeout();
  // A keep-alive connection the worker closed while idle fails before any byte of the
  // answer; the worker never saw the request, so sending it again is safe.
  req.retry_if_stale = true;

  auto self = std::static_pointer_cast<RegularRequest>(shared_from_this());
  call_ = ctx_.client.request((*up)->endpoint, std::move(req),
                              {.on_head = [self](const net::ResponseHead& h) { self->on_head(h); },
                               .on_body = [self](std::string_view b) { self->on_body(b); },
                               .on_done = [self](const Status& st) { self->on_done(st); }});
}

void RegularRequest::cancel_attempt() {
  call_.cancel();
  // Our hold on the call goes too: its callbacks hold this request, and a call the client
  // already dropped (its loop stopping) would keep them, and the request, alive.
  call_ = {};
  load_.release();
}

void RegularRequest::on_client_writable() { call_.resume_body(); }

void RegularRequest::on_head(const net::ResponseHead& head) {
  status_ = head.status;
  headers_ = forward_response_headers(head.headers);
  bool attempts_left = attempt() + 1 < ctx_.core.retry().max_attempts();
  if (is_retryable(AttemptResult::http(status_)) && attempts_left) {
    mode_ = Mode::kRetryable;
    return;
  }
  auto length = content_length(head.headers);
  if (length && *length <= kMaxWholeBody && !is_event_stream(head.headers)) {
    mode_ = Mode::kWhole;
    buffered_.reserve(*length);
    return;
  }
  mode_ = Mode::kStream;
  begin_stream(status_, headers_);
}

void RegularRequest::on_body(std::string_view bytes) {
  if (mode_ != Mode::kStream) {
    buffered_.append(bytes);
    return;
  }
  if (write(bytes) == net::WriteResult::kPaused) call_.pause_body();
}

void RegularRequest::on_done(const Status& st) {
  AttemptResult result = attempt_result(st, status_);
  ctx_.core.record_outcome(*worker_, result, ctx_.now());
  load_.release();
  if (!st.is_ok()) {
    std::string msg = fmt::format("worker {}: {}", worker_->url(), st.message());
    if (started()) {
      fail_stream(502, msg, "stream_interrupted");
    } else {
      attempt_failed(result, Reply::error(gateway_status(result.transport), msg));
    }
    return;
  }
  switch (mode_) {
    case Mode::kRetryable:
      attempt_failed(result, Reply{status_, std::move(buffered_), std::move(headers_)});
      return;
    case Mode::kWhole:
      reply(Reply{status_, std::move(buffered_), std::move(headers_)});
      return;
    case Mode::kStream:
      end_stream(status_ >= 400 ? "stream_error_status" : "");
      return;
  }
}

}  // namespace pdctl::router

#include "roles/router/api_request.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace pdctl::router {

Reply Reply::error(int status, std::string_view message, std::string_view type) {
  return Reply{status, net::error_json(status, message, type), {}};
}

ApiRequest::ApiRequest(RouterContext& ctx, ApiInput input, net::Response resp)
    : ctx_(ctx),
      in_(std::move(input)),
      resp_(std::move(resp)),
      arrived_(ctx.now()) {}

ApiRequest::~ApiRequest() {
  // Normally finish() ran; this covers a request dropped by a loop that stopped.
  ctx_.deadlines.remove(*this);
  if (holds_slot_) ctx_.core.admission().release(ctx_.now());
}

void ApiRequest::submit() {
  // The strong owner: the server keeps on_close until the response is finished or the
  // connection is gone (it is not called after a finished response).
  resp_.on_close([self = shared_from_this()] { self->on_client_gone(); });
  resp_.on_writable([weak = weak_from_this()] {
    if (auto self = weak.lock(); self && !self->done()) self->on_client_writable();
  });

  AdmissionController& ac = ctx_.core.admission();
  if (ac.try_acquire()) {
    holds_slot_ = true;
    start();
    return;
  }
  auto ticket = ac.enqueue(ctx_.now(), [weak = weak_from_this(), ctx = &ctx_](Status st) {
    // Runs inside the controller's release() or expire(); a granted slot is ours from
    // here on, so it is recorded now and the start itself is posted, not run inside
    // another request's completion.
    auto self = weak.lock();
    if (!self) {
      // Gone without cancelling its ticket (not expected): the slot goes back.
      if (st.is_ok()) ctx->core.admission().release(ctx->now());
      return;
    }
    self->ticket_.reset();
    if (!st.is_ok()) {
      ctx->core.metrics().record_admission_rejected("queue_timeout");
      self->reply(Reply::error(408, st.message()), "queue_timeout");
      return;
    }
    self->holds_slot_ = true;
    ctx->loop.post([weak] {
      if (auto s = weak.lock(); s && s->phase_ == Phase::kQueued) s->start();
    });
  });
  if (!ticket) {
    ctx_.core.metrics().record_admission_rejected("queue_full");
    reply(Reply::error(429, ticket.status().message()), "queue_full");
    return;
  }
  ticket_ = *ticket;
  phase_ = Phase::kQueued;
  if (ctx_.on_enqueued) ctx_.on_enqueued();
}

void ApiRequest::start() {
  phase_ = Phase::kRunning;
  ctx_.deadlines.add(*this, ctx_.now() + ctx_.request_timeout());
  start_attempt();
}

void ApiRequest::on_deadline() {
  auto self = shared_from_this();  // on_timeout() may drop the last other owner
  on_timeout();
}

void ApiRequest::attempt_failed(const AttemptResult& result, Reply last) {
  if (done()) return;
  RetryPolicy::Decision d = ctx_.core.retry().next(attempt_, result);
  switch (d.verdict) {
    case RetryPolicy::Verdict::kDone:
      reply(std::move(last));
      return;
    case RetryPolicy::Verdict::kExhausted:
      ctx_.core.metrics().record_retries_exhausted(route_name());
      reply(std::move(last));
      return;
    case RetryPolicy::Verdict::kRetry:
      break;
  }
  ctx_.core.metrics().record_retry(route_name());
  ctx_.core.metrics().record_retry_backoff(d.delay, attempt_);
  spdlog::debug("router: {} attempt {} failed (status {}); retrying in {} ms", route_name(), attempt_,
                result.http_status, d.delay.count());
  ++attempt_;
  phase_ = Phase::kBackoff;
  if (!backoff_) backoff_ = std::make_unique<net::Timer>(ctx_.loop);
  backoff_->start(d.delay, [weak = weak_from_this()] {
    auto self = weak.lock();
    if (!self || self->phase_ != Phase::kBackoff) return;
    self->phase_ = Phase::kRunning;
    self->start_attempt();
  });
}

void ApiRequest::reply(Reply r, std::string_view error_type) {
  if (done()) return;
  std::string label;
  if (error_type.empty() && r.status >= 400) {
    label = fmt::format("status_{}", r.status);
    error_type = label;
  }
  resp_.send(r.status, std::move(r.body), r.headers);
  finish(error_type);
}

void ApiRequest::begin_stream(int status, const net::Headers& headers) {
  if (done() || started()) return;
  sse_ = is_event_stream(headers);
  resp_.begin_stream(status, headers);
}

net::WriteResult ApiRequest::write(std::string_view bytes) {
  if (done()) return net::WriteResult::kClosed;
  return resp_.write(bytes);
}

void ApiRequest::end_stream(std::string_view error_type) {
  if (done()) return;
  resp_.end();
  finish(error_type);
}

void ApiRequest::fail_stream(int status, std::string_view message, std::string_view error_type) {
  if (done()) return;
  spdlog::warn("router: {} stream failed after it began: {}", route_name(), message);
  if (sse_) {
    resp_.write(sse_error_event(status, message));
    resp_.end();
  } else {
    // The last copy of the Response: dropping it unfinished cuts the connection off.
    net::Response cut = std::move(resp_);
  }
  finish(error_type);
}

void ApiRequest::on_timeout() {
  if (done()) return;
  cancel_attempt();
  if (backoff_) backoff_->cancel();
  std::string msg = fmt::format("the request took longer than --request-timeout-secs ({} s)",
                                ctx_.opts.request_timeout_secs);
  if (!started()) {
    reply(Reply::error(504, msg), "timeout");
  } else {
    fail_stream(504, msg, "timeout");
  }
}

void ApiRequest::on_client_gone() {
  if (done()) return;
  if (ticket_) ctx_.core.admission().cancel(*ticket_);
  ticket_.reset();
  finish("client_disconnect");
}

void ApiRequest::finish(std::string_view error_type) {
  if (done()) return;
  phase_ = Phase::kDone;
  cancel_attempt();
  ctx_.deadlines.remove(*this);
  if (backoff_) backoff_->cancel();
  TimePoint now = ctx_.now();
  RouterMetrics& m = ctx_.core.metrics();
  auto took = std::chrono::duration<double>(now - arrived_);
  m.record_request_duration(route_name(), took);
  if (ctx_.core.pd_mode()) {
    m.record_pd_request(route_name());
    m.record_pd_request_duration(route_name(), took);
  }
  if (!error_type.empty()) {
    m.record_request_error(route_name(), error_type);
    if (ctx_.core.pd_mode()) m.record_pd_error(error_type);
  }
  if (holds_slot_) {
    holds_slot_ = false;
    ctx_.core.admission().release(now);
  }
}

}  // namespace pdctl::router

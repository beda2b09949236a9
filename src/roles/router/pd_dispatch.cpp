#include "roles/router/pd_dispatch.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace pdctl::router {
namespace {

using nlohmann::json;

// Bounds what a prefill reply may hold (its input logprobs of a long prompt are the
// largest legitimate case).
constexpr uint64_t kMaxPrefillBody = 256ull << 20;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

std::optional<json> prefill_logprobs_from_body(std::string_view body, bool sse) {
  if (!sse) {
    json j = json::parse(body, nullptr, false);
    if (j.is_discarded()) return std::nullopt;
    return prefill_input_logprobs(j);
  }
  std::optional<json> found;
  net::SseParser parser;
  Status st = parser.feed(body, [&](const net::SseEvent& ev) {
    if (found || ev.data == "[DONE]") return;
    json j = json::parse(ev.data, nullptr, false);
    if (!j.is_discarded()) found = prefill_input_logprobs(j);
  });
  if (!st.is_ok()) return std::nullopt;
  return found;
}

void PdRequest::Side::reset() {
  call.cancel();
  load.release();
  worker.reset();
  call = {};
  status = 0;
  headers.clear();
  body.clear();
  keep_body = false;
  done = false;
}

PdRequest::~PdRequest() {
  prefill_.call.cancel();
  decode_.call.cancel();
}

void PdRequest::start_attempt() {
  TimePoint now = ctx_.now();
  auto pair = ctx_.core.pick_pair(in_.text, now);
  if (!pair) {
    attempt_failed(AttemptResult::http(503), Reply::error(503, pair.status().message()));
    return;
  }
  prefill_.reset();
  decode_.reset();
  decode_stream_ = false;
  client_paused_ = false;
  prefill_logprobs_.reset();
  prefill_logprobs_ready_ = false;
  decode_events_ = net::SseParser();
  pending_.clear();

  prefill_.worker = pair->prefill.worker;
  prefill_.load = std::move(pair->prefill.load);
  decode_.worker = pair->decode.worker;
  decode_.load = std::move(pair->decode.load);

  auto body = make_pd_body(in_.route, in_.json, *prefill_.worker, ctx_.core.rng());
  if (!body) {
    prefill_.reset();
    decode_.reset();
    reply(Reply::error(400, body.status().message()), "invalid_request");
    return;
  }
  auto p_up = ctx_.upstreams.get(prefill_.worker->url());
  auto d_up = ctx_.upstreams.get(decode_.worker->url());
  if (!p_up || !d_up) {
    Status bad = !p_up ? p_up.status() : d_up.status();
    prefill_.reset();
    decode_.reset();
    reply(Reply::error(502, bad.message()), "bad_worker_url");
    return;
  }

  RouterMetrics& m = ctx_.core.metrics();
  m.record_pd_prefill_request(prefill_.worker->url());
  m.record_pd_decode_request(decode_.worker->url());

  net::ClientRequest req;
  req.method = "POST";
  req.headers = in_.headers;
  req.headers.set("Content-Type", "application/json");
  req.body = dump(*body);
  req.response_header_timeout = ctx_.request_timeout();
  req.idle_read_timeout = ctx_.request_timeout();
  req.retry_if_stale = true;  // see RegularRequest: a stale idle connection never reached the worker

  net::ClientRequest preq = req;
  preq.target = (*p_up)->prefix + in_.target;
  preq.max_body_bytes = kMaxPrefillBody;
  req.target = (*d_up)->prefix + in_.target;

  auto self = std::static_pointer_cast<PdRequest>(shared_from_this());
  // Decode first: its pool is the one the client waits on.
  decode_.call = ctx_.client.request(
      (*d_up)->endpoint, std::move(req),
      {.on_head = [self](const net::ResponseHead& h) { self->on_decode_head(h); },
       .on_body = [self](std::string_view b) { self->on_decode_body(b); },
       .on_done = [self](const Status& st) { self->on_decode_done(st); }});
  prefill_.call = ctx_.client.request(
      (*p_up)->endpoint, std::move(preq),
      {.on_head = [self](const net::ResponseHead& h) { self->on_prefill_head(h); },
       .on_body =
           [self](std::string_view b) {
             if (self->prefill_.keep_body) self->prefill_.body.append(b);
           },
       .on_done = [self](const Status& st) { self->on_prefill_done(st); }});
}

void PdRequest::cancel_attempt() {
  // See RegularRequest::cancel_attempt: the handles go as well as the calls.
  prefill_.call.cancel();
  decode_.call.cancel();
  prefill_.call = {};
  decode_.call = {};
  prefill_.load.release();
  decode_.load.release();
}

void PdRequest::on_prefill_head(const net::ResponseHead& head) {
  prefill_.status = head.status;
  prefill_.headers = forward_response_headers(head.headers);
  // The body matters only for an error message or for logprobs; otherwise it is drained.
  prefill_.keep_body = !prefill_.ok() || in_.logprobs;
}

void PdRequest::on_prefill_done(const Status& st) {
  prefill_.done = true;
  AttemptResult result = attempt_result(st, prefill_.status);
  ctx_.core.record_outcome(*prefill_.worker, result, ctx_.now());
  prefill_.load.release();
  if (!st.is_ok() || !prefill_.ok()) {
    ctx_.core.metrics().record_pd_prefill_error(prefill_.worker->url());
    side_failed(prefill_, decode_, result, st);
    return;
  }
  prefill_logprobs_ready_ = true;
  if (in_.logprobs && (in_.stream || decode_stream_)) {
    prefill_logprobs_ = prefill_logprobs_from_body(prefill_.body, is_event_stream(prefill_.headers));
  }
  if (merging()) {
    flush_pending();
    if (done()) return;
    update_decode_flow();
  }
  if (decode_.done) complete();
}

void PdRequest::on_decode_head(const net::ResponseHead& head) {
  decode_.status = head.status;
  decode_.headers = forward_response_headers(head.headers);
  if (!decode_.ok()) {
    decode_.keep_body = true;
    return;
  }
  decode_stream_ = in_.stream || is_event_stream(head.headers);
  decode_.keep_body = !decode_stream_;
  if (merging()) {
    // A decode that streams although the client did not ask (pathological): prefill's
    // logprobs were not extracted when it answered.
    if (prefill_logprobs_ready_ && !prefill_logprobs_) {
      prefill_logprobs_ = prefill_logprobs_from_body(prefill_.body, is_event_stream(prefill_.headers));
    }
    update_decode_flow();
  }
}

void PdRequest::on_decode_body(std::string_view bytes) {
  if (decode_.keep_body) {
    decode_.body.append(bytes);
    return;
  }
  if (!merging()) {
    emit(bytes);
    return;
  }
  Status st = decode_events_.feed(bytes, [this](const net::SseEvent& ev) {
    if (prefill_logprobs_ready_) {
      emit_event(ev.data);
    } else {
      pending_.push_back(ev.data);
    }
  });
  if (!st.is_ok()) {
    decode_.call.cancel();
    on_decode_done(st.with_context("decode stream"));
    return;
  }
  update_decode_flow();
}

void PdRequest::on_decode_done(const Status& st) {
  if (decode_.done) return;
  decode_.done = true;
  AttemptResult result = attempt_result(st, decode_.status);
  ctx_.core.record_outcome(*decode_.worker, result, ctx_.now());
  decode_.load.release();
  if (!st.is_ok() || !decode_.ok()) {
    RouterMetrics& m = ctx_.core.metrics();
    m.record_pd_decode_error(decode_.worker->url());
    if (started()) m.record_pd_stream_error(decode_.worker->url());
    side_failed(decode_, prefill_, result, st);
    return;
  }
  if (prefill_.done) complete();
}

void PdRequest::side_failed(Side& failed, Side& other, const AttemptResult& result, const Status& st) {
  if (done()) return;
  // The pair is finished: the other worker's work is useless now (a real prefill would
  // wait for its decode peer's pages, a decode for its KV).
  other.call.cancel();
  other.call = {};
  other.load.release();
  const char* side = &failed == &prefill_ ? "prefill" : "decode";
  std::string msg = st.is_ok() ? fmt::format("{} worker {} answered {}", side, failed.worker->url(), failed.status)
                               : fmt::format("{} worker {}: {}", side, failed.worker->url(), st.message());
  spdlog::warn("router: {} (attempt {})", msg, attempt());
  int status = st.is_ok() ? failed.status : gateway_status(result.transport);
  if (started()) {
    fail_stream(status >= 500 ? status : 502, msg, fmt::format("{}_failed", side));
    return;
  }
  Reply last = st.is_ok() && !failed.body.empty()
                   ? Reply{failed.status, std::move(failed.body), std::move(failed.headers)}
                   : Reply::error(status, msg);
  attempt_failed(result, std::move(last));
}

void PdRequest::complete() {
  if (done()) return;
  if (decode_stream_) {
    flush_pending();
    if (done()) return;
    if (!started()) begin_stream(decode_.status, decode_.headers);
    end_stream();
    return;
  }
  std::string body = std::move(decode_.body);
  if (in_.logprobs) {
    json p = json::parse(prefill_.body, nullptr, false);
    json d = json::parse(body, nullptr, false);
    if (!p.is_discarded() && !d.is_discarded() && merge_logprobs(p, d)) body = dump(d);
  }
  reply(Reply{decode_.status, std::move(body), std::move(decode_.headers)});
}

void PdRequest::emit(std::string_view bytes) {
  if (done()) return;
  if (!started()) begin_stream(decode_.status, decode_.headers);
  if (write(bytes) == net::WriteResult::kPaused) {
    client_paused_ = true;
    decode_.call.pause_body();
  }
}

void PdRequest::emit_event(const std::string& data) {
  std::optional<std::string> merged =
      prefill_logprobs_ ? merge_stream_logprobs(*prefill_logprobs_, data) : std::nullopt;
  emit(net::sse_event(merged ? *merged : data));
}

void PdRequest::flush_pending() {
  std::vector<std::string> events = std::move(pending_);
  pending_.clear();
  for (const auto& e : events) {
    if (done()) return;
    emit_event(e);
  }
}

void PdRequest::on_client_writable() {
  client_paused_ = false;
  update_decode_flow();
}

void PdRequest::update_decode_flow() {
  if (decode_.done) return;
  bool hold = client_paused_ || (merging() && !prefill_logprobs_ready_);
  if (hold) {
    decode_.call.pause_body();
  } else {
    decode_.call.resume_body();
  }
}

}  // namespace pdctl::router

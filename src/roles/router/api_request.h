#pragma once
// One client request on an API route (/generate, /v1/completions, /v1/chat/completions):
// the part of its life that does not depend on the mode. It holds the admission slot, the
// whole-request timeout (--request-timeout-secs), the retry loop with its backoff timer,
// the client's Response, and the request metrics; a subclass (RegularRequest,
// PdRequest) makes the attempts.
//
// Lifetime: the request is owned by the on_close callback of its Response (the server
// keeps that until the response is finished or the client is gone) and by the callbacks of
// its upstream calls while they run. The deadline list and the backoff timer hold it
// weakly (the list by a raw link that finish() and the destructor remove).
//
// Per attempt the subclass either finishes the request (reply / end_stream / fail_stream)
// or calls attempt_failed() before anything reached the client, which retries (a new
// attempt, a new pick, a new room) or replies with the last error.
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "net/event_loop.h"
#include "net/http_server.h"
#include "roles/router/admission.h"
#include "roles/router/pd_request.h"
#include "roles/router/router_context.h"

namespace pdctl::router {

// A response sent whole.
struct Reply {
  int status = 200;
  std::string body;
  net::Headers headers;  // Content-Type: application/json when absent

  // The stack's JSON error body.
  static Reply error(int status, std::string_view message, std::string_view type = {});
};

// What the server learned from the client's request before admitting it.
struct ApiInput {
  ApiRoute route = ApiRoute::kGenerate;
  std::string target;        // path and query as the client sent them
  std::string body;          // raw body, forwarded untouched in regular mode
  nlohmann::json json;       // parsed body; null when the mode and policy did not need it
  std::string text;          // cache_aware's routing text ("" when no policy reads it)
  bool stream = false;       // "stream": true (known only when parsed)
  bool logprobs = false;     // wants_logprobs() (known only when parsed)
  net::Headers headers;      // to forward to workers
};

class ApiRequest : public std::enable_shared_from_this<ApiRequest>, private DeadlineNode {
 public:
  ApiRequest(RouterContext& ctx, ApiInput input, net::Response resp);
  virtual ~ApiRequest();
  ApiRequest(const ApiRequest&) = delete;
  ApiRequest& operator=(const ApiRequest&) = delete;

  // Asks for an admission slot: starts now, queues (then starts when granted), or answers
  // 429 when the queue is full. Call once, right after construction.
  void submit();

 protected:
  // Starts attempt attempt() (0-based): pick, send. Never called after the request is done.
  virtual void start_attempt() = 0;
  // Drops the current attempt's upstream calls (their callbacks stop) and load guards.
  // Idempotent; called on timeout, client disconnect and finish.
  virtual void cancel_attempt() = 0;
  // The client took queued bytes: resume upstream bodies paused by write() == kPaused.
  virtual void on_client_writable() {}

  // The attempt failed before anything reached the client: retry after the backoff, or
  // answer `last` (the worker's error response, or the router's own).
  void attempt_failed(const AttemptResult& result, Reply last);
  // Whole response; finishes the request. `error_type` labels a failure in the metrics
  // (default for a status >= 400: "status_<code>").
  void reply(Reply r, std::string_view error_type = {});
  // Streamed response: begin once, write as bytes arrive, then end_stream (success) or
  // fail_stream (after it began: an SSE error event when the stream is SSE, else the
  // connection is cut so that the client cannot take a truncated body for a whole one).
  void begin_stream(int status, const net::Headers& headers);
  net::WriteResult write(std::string_view bytes);
  void end_stream(std::string_view error_type = {});
  void fail_stream(int status, std::string_view message, std::string_view error_type);

  bool started() const { return resp_.started(); }
  bool done() const { return phase_ == Phase::kDone; }
  uint32_t attempt() const { return attempt_; }
  const char* route_name() const { return route_path(in_.route); }

  RouterContext& ctx_;
  ApiInput in_;

 private:
  enum class Phase { kNew, kQueued, kRunning, kBackoff, kDone };

  void start();
  void on_deadline() override;
  void on_timeout();
  void on_client_gone();
  void finish(std::string_view error_type);

  net::Response resp_;
  std::unique_ptr<net::Timer> backoff_;  // made on the first retry: most requests never wait
  Phase phase_ = Phase::kNew;
  uint32_t attempt_ = 0;
  bool holds_slot_ = false;
  std::optional<AdmissionController::Ticket> ticket_;
  TimePoint arrived_;
  bool sse_ = false;
};

}  // namespace pdctl::router

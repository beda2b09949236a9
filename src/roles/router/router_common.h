#pragma once
// Types shared by the router's core logic. Everything under src/roles/router/ runs on the
// router's single event-loop thread: no locks, no blocking, and time is always passed in
// (`now`) so that tests are deterministic without sleeping.
#include <chrono>
#include <cstdint>
#include <random>

namespace pdctl::router {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

// One engine type for every random choice (policies, jitter, rooms); seeded by the caller.
using Rng = std::mt19937_64;

// How the attempt to reach a worker ended at the transport level.
enum class TransportError {
  kNone,     // an HTTP response arrived (see AttemptResult::http_status)
  kRefused,  // connection refused: nothing listens at the worker's address
  kReset,    // connection reset or closed before a complete response
  kTimeout,  // connect or response timeout
  kOther,    // DNS, TLS, malformed response, ...
};

// The result of one request to one worker, as the HTTP layer saw it.
struct AttemptResult {
  int http_status = 0;  // 0 when transport != kNone
  TransportError transport = TransportError::kNone;

  static AttemptResult http(int status) { return {status, TransportError::kNone}; }
  static AttemptResult transport_error(TransportError e) { return {0, e}; }
};

// SGLang (pd_router.rs) records `status.is_success() || status.is_client_error()` into the
// circuit breaker: a 4xx (408 and 429 included) is the client's problem, not the worker's.
// A transport error has no status and counts as a failure.
inline bool breaker_success(const AttemptResult& r) {
  if (r.transport != TransportError::kNone) return false;
  return (r.http_status >= 200 && r.http_status < 300) || (r.http_status >= 400 && r.http_status < 500);
}

}  // namespace pdctl::router

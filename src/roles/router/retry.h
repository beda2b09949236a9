#pragma once
// Retries with exponential backoff (SGLang's sgl-router/src/core/retry.rs), as a pure
// decision: "attempt n (0-based) ended with X: retry after D, or give up". The HTTP layer
// arms a timer for D and picks a new worker pair (and a new bootstrap room) for the retry.
#include <chrono>
#include <cstdint>

#include "roles/router/router_common.h"

namespace pdctl::router {

struct RetryConfig {
  uint32_t max_retries = 5;  // attempts in total, the first one included (at least 1)
  uint64_t initial_backoff_ms = 50;
  uint64_t max_backoff_ms = 30000;
  double backoff_multiplier = 1.5;
  double jitter_factor = 0.2;  // clamped to [0, 1]
  bool disabled = false;       // --disable-retries: one attempt
};

// HTTP 408, 429, 500, 502, 503, 504 (SGLang's is_retryable_status), and every transport
// error (no response: SGLang turns those into 502 before deciding). Other 4xx are not.
bool is_retryable(const AttemptResult& r);

class RetryPolicy {
 public:
  RetryPolicy(RetryConfig config, uint64_t seed);

  uint32_t max_attempts() const;

  // Backoff after failed attempt `attempt` (0-based), before jitter:
  // min(initial * multiplier^attempt, max), truncated to whole milliseconds.
  std::chrono::milliseconds base_delay(uint32_t attempt) const;
  // With jitter: base + round(base * u), u uniform in [-jitter, +jitter], at least 0. As in
  // SGLang the cap applies before the jitter, so a delay may exceed max by the jitter.
  std::chrono::milliseconds delay(uint32_t attempt);

  enum class Verdict {
    kDone,       // success, or an error not worth retrying: return this response
    kRetry,      // retry after `delay` (sgl_router_retries_total)
    kExhausted,  // retryable, but that was the last attempt (sgl_router_retries_exhausted_total)
  };
  struct Decision {
    Verdict verdict = Verdict::kDone;
    std::chrono::milliseconds delay{0};
  };
  // What to do after attempt `attempt` (0-based) ended with `result`.
  Decision next(uint32_t attempt, const AttemptResult& result);

  const RetryConfig& config() const { return config_; }

 private:
  RetryConfig config_;
  Rng rng_;
};

}  // namespace pdctl::router

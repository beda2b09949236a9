#include "roles/router/retry.h"

#include <algorithm>
#include <cmath>
#include <random>

namespace pdctl::router {

bool is_retryable(const AttemptResult& r) {
  if (r.transport != TransportError::kNone) return true;
  switch (r.http_status) {
    case 408: case 429: case 500: case 502: case 503: case 504: return true;
    default: return false;
  }
}

RetryPolicy::RetryPolicy(RetryConfig config, uint64_t seed) : config_(config), rng_(seed) {
  config_.jitter_factor = std::clamp(config_.jitter_factor, 0.0, 1.0);
}

uint32_t RetryPolicy::max_attempts() const {
  return config_.disabled ? 1 : std::max<uint32_t>(config_.max_retries, 1);
}

std::chrono::milliseconds RetryPolicy::base_delay(uint32_t attempt) const {
  double d = static_cast<double>(config_.initial_backoff_ms) *
             std::pow(config_.backoff_multiplier, static_cast<double>(attempt));
  // Cap before converting: a large attempt would overflow the integer.
  double capped = std::min(d, static_cast<double>(config_.max_backoff_ms));
  return std::chrono::milliseconds(static_cast<int64_t>(capped));
}

std::chrono::milliseconds RetryPolicy::delay(uint32_t attempt) {
  int64_t base = base_delay(attempt).count();
  double j = config_.jitter_factor;
  if (j <= 0.0) return std::chrono::milliseconds(base);
  std::uniform_real_distribution<double> scale(-j, j);
  double jitter = std::max(std::round(static_cast<double>(base) * scale(rng_)), -static_cast<double>(base));
  return std::chrono::milliseconds(std::max<int64_t>(base + static_cast<int64_t>(jitter), 0));
}

RetryPolicy::Decision RetryPolicy::next(uint32_t attempt, const AttemptResult& result) {
  if (!is_retryable(result)) return {Verdict::kDone, {}};
  if (attempt + 1 >= max_attempts()) return {Verdict::kExhausted, {}};
  return {Verdict::kRetry, delay(attempt)};
}

}  // namespace pdctl::router

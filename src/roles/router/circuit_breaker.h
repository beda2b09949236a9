#pragma once
// Per-worker circuit breaker with SGLang's semantics (sgl-router/src/core/circuit_breaker.rs):
//   closed    --(failure_threshold *consecutive* failures)--> open
//   open      --(timeout elapsed since it opened; checked lazily)--> half-open
//   half-open --(success_threshold consecutive successes)--> closed
//   half-open --(any failure)--> open
// Half-open lets every request through, as SGLang does. SGLang accepts a window duration
// but never uses it (failures are consecutive, a success resets them); so does this class:
// `window` is kept only so that the flag has a home.
#include <chrono>
#include <cstdint>
#include <optional>

#include "roles/router/router_common.h"

namespace pdctl::router {

// Values are the `sgl_router_cb_state` gauge's: 0 closed, 1 open, 2 half-open.
enum class CircuitState { kClosed = 0, kOpen = 1, kHalfOpen = 2 };

// "closed", "open", "half_open" (SGLang's metric label values).
const char* circuit_state_name(CircuitState s);

struct CircuitBreakerConfig {
  bool enabled = true;  // false: always closed, outcomes are only counted
  uint32_t failure_threshold = 10;
  uint32_t success_threshold = 3;
  std::chrono::milliseconds timeout{std::chrono::seconds(60)};
  std::chrono::milliseconds window{std::chrono::seconds(120)};  // unused, as in SGLang
};

struct CircuitTransition {
  CircuitState from;
  CircuitState to;
};

class CircuitBreaker {
 public:
  // `now` is when the breaker starts (closed).
  CircuitBreaker(CircuitBreakerConfig config, TimePoint now);

  // May a request be sent now? Applies the timeout as advance() does; call advance() first
  // where the transition itself must be observed (metrics).
  bool can_execute(TimePoint now);

  // Applies the open -> half-open timeout; returns the transition when one happened.
  std::optional<CircuitTransition> advance(TimePoint now);

  // The state as of `now` (applies the timeout first).
  CircuitState state(TimePoint now);
  // The state as last computed, without looking at the clock.
  CircuitState current() const { return state_; }

  // Records one request outcome; returns the transition when one happened.
  std::optional<CircuitTransition> record(bool success, TimePoint now);

  uint32_t consecutive_failures() const { return consecutive_failures_; }
  uint32_t consecutive_successes() const { return consecutive_successes_; }
  uint64_t total_failures() const { return total_failures_; }
  uint64_t total_successes() const { return total_successes_; }
  TimePoint last_state_change() const { return last_change_; }
  const CircuitBreakerConfig& config() const { return config_; }

 private:
  std::optional<CircuitTransition> transition_to(CircuitState next, TimePoint now);

  CircuitBreakerConfig config_;
  CircuitState state_ = CircuitState::kClosed;
  uint32_t consecutive_failures_ = 0;
  uint32_t consecutive_successes_ = 0;
  uint64_t total_failures_ = 0;
  uint64_t total_successes_ = 0;
  TimePoint last_change_;
};

}  // namespace pdctl::router

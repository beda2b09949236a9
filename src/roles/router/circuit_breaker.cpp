#include "roles/router/circuit_breaker.h"

namespace pdctl::router {

const char* circuit_state_name(CircuitState s) {
  switch (s) {
    case CircuitState::kClosed: return "closed";
    case CircuitState::kOpen: return "open";
    case CircuitState::kHalfOpen: return "half_open";
  }
  return "unknown";
}

CircuitBreaker::CircuitBreaker(CircuitBreakerConfig config, TimePoint now)
    : config_(config), last_change_(now) {}

std::optional<CircuitTransition> CircuitBreaker::advance(TimePoint now) {
  if (state_ == CircuitState::kOpen && now - last_change_ >= config_.timeout) {
    return transition_to(CircuitState::kHalfOpen, now);
  }
  return std::nullopt;
}

bool CircuitBreaker::can_execute(TimePoint now) {
  advance(now);
  return state_ != CircuitState::kOpen;
}

CircuitState CircuitBreaker::state(TimePoint now) {
  advance(now);
  return state_;
}

std::optional<CircuitTransition> CircuitBreaker::record(bool success, TimePoint now) {
  if (success) {
    ++total_successes_;
    consecutive_failures_ = 0;
    ++consecutive_successes_;
    if (config_.enabled && state_ == CircuitState::kHalfOpen &&
        consecutive_successes_ >= config_.success_threshold) {
      return transition_to(CircuitState::kClosed, now);
    }
    return std::nullopt;
  }
  ++total_failures_;
  consecutive_successes_ = 0;
  ++consecutive_failures_;
  if (!config_.enabled) return std::nullopt;
  switch (state_) {
    case CircuitState::kClosed:
      if (consecutive_failures_ >= config_.failure_threshold) {
        return transition_to(CircuitState::kOpen, now);
      }
      return std::nullopt;
    case CircuitState::kHalfOpen:
      return transition_to(CircuitState::kOpen, now);
    case CircuitState::kOpen:
      // A request that was sent before the breaker opened may still fail; stay open and
      // do not restart the timeout (SGLang does not either).
      return std::nullopt;
  }
  return std::nullopt;
}

std::optional<CircuitTransition> CircuitBreaker::transition_to(CircuitState next, TimePoint now) {
  if (next == state_) return std::nullopt;
  CircuitTransition t{state_, next};
  state_ = next;
  last_change_ = now;
  // Counter resets on entering each state, as in SGLang.
  switch (next) {
    case CircuitState::kClosed:
      consecutive_failures_ = 0;
      consecutive_successes_ = 0;
      break;
    case CircuitState::kOpen:
      consecutive_successes_ = 0;
      break;
    case CircuitState::kHalfOpen:
      consecutive_failures_ = 0;
      consecutive_successes_ = 0;
      break;
  }
  return t;
}

}  // namespace pdctl::router

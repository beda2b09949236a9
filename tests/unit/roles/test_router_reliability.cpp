// Circuit breaker, health thresholds and retry decisions, with injected time and seeds.
#include <doctest/doctest.h>

#include <set>

#include "roles/router/circuit_breaker.h"
#include "roles/router/retry.h"
#include "roles/router/worker.h"

using namespace pdctl::router;
using namespace std::chrono_literals;

namespace {

const TimePoint t0 = TimePoint{} + 1000h;

CircuitBreakerConfig breaker_config() {
  CircuitBreakerConfig c;
  c.failure_threshold = 3;
  c.success_threshold = 2;
  c.timeout = 30s;
  return c;
}

}  // namespace

TEST_CASE("breaker: opens after failure_threshold consecutive failures") {
  CircuitBreaker cb(breaker_config(), t0);
  CHECK(cb.state(t0) == CircuitState::kClosed);
  CHECK_FALSE(cb.record(false, t0));
  CHECK_FALSE(cb.record(false, t0));
  auto t = cb.record(false, t0 + 1s);
  REQUIRE(t);
  CHECK(t->from == CircuitState::kClosed);
  CHECK(t->to == CircuitState::kOpen);
  CHECK_FALSE(cb.can_execute(t0 + 1s));
  CHECK(cb.consecutive_failures() == 3);
}

TEST_CASE("breaker: failures must be consecutive; a success resets them (no window)") {
  CircuitBreaker cb(breaker_config(), t0);
  cb.record(false, t0);
  cb.record(false, t0);
  cb.record(true, t0);
  CHECK(cb.consecutive_failures() == 0);
  cb.record(false, t0);
  cb.record(false, t0);
  CHECK(cb.state(t0) == CircuitState::kClosed);
  // Failures far apart still count: SGLang ignores the window duration.
  CircuitBreaker slow(breaker_config(), t0);
  slow.record(false, t0);
  slow.record(false, t0 + 1h);
  slow.record(false, t0 + 2h);
  CHECK(slow.state(t0 + 2h) == CircuitState::kOpen);
}

TEST_CASE("breaker: open -> half-open after the timeout -> closed after success_threshold successes") {
  CircuitBreaker cb(breaker_config(), t0);
  for (int i = 0; i < 3; ++i) cb.record(false, t0);
  CHECK(cb.state(t0 + 29s) == CircuitState::kOpen);
  CHECK_FALSE(cb.can_execute(t0 + 29s));
  auto t = cb.advance(t0 + 30s);
  REQUIRE(t);
  CHECK(t->to == CircuitState::kHalfOpen);
  CHECK(cb.can_execute(t0 + 30s));  // half-open lets requests through
  CHECK_FALSE(cb.record(true, t0 + 31s));
  CHECK(cb.current() == CircuitState::kHalfOpen);
  t = cb.record(true, t0 + 32s);
  REQUIRE(t);
  CHECK(t->to == CircuitState::kClosed);
  CHECK(cb.consecutive_successes() == 0);
  CHECK(cb.consecutive_failures() == 0);
}

TEST_CASE("breaker: a failure in half-open opens it again, and the timeout restarts") {
  CircuitBreaker cb(breaker_config(), t0);
  for (int i = 0; i < 3; ++i) cb.record(false, t0);
  REQUIRE(cb.state(t0 + 30s) == CircuitState::kHalfOpen);
  cb.record(true, t0 + 31s);
  auto t = cb.record(false, t0 + 40s);
  REQUIRE(t);
  CHECK(t->from == CircuitState::kHalfOpen);
  CHECK(t->to == CircuitState::kOpen);
  CHECK(cb.state(t0 + 69s) == CircuitState::kOpen);
  CHECK(cb.state(t0 + 70s) == CircuitState::kHalfOpen);
  CHECK(cb.total_failures() == 4);
  CHECK(cb.total_successes() == 1);
}

TEST_CASE("breaker: late failures while open neither change it nor restart the timeout") {
  CircuitBreaker cb(breaker_config(), t0);
  for (int i = 0; i < 3; ++i) cb.record(false, t0);
  CHECK_FALSE(cb.record(false, t0 + 20s));
  CHECK(cb.state(t0 + 30s) == CircuitState::kHalfOpen);
}

TEST_CASE("breaker: disabled, it never opens") {
  CircuitBreakerConfig c = breaker_config();
  c.enabled = false;
  CircuitBreaker cb(c, t0);
  for (int i = 0; i < 100; ++i) CHECK_FALSE(cb.record(false, t0));
  CHECK(cb.can_execute(t0));
  CHECK(cb.total_failures() == 100);
}

TEST_CASE("breaker: state codes and names are SGLang's") {
  CHECK(static_cast<int>(CircuitState::kClosed) == 0);
  CHECK(static_cast<int>(CircuitState::kOpen) == 1);
  CHECK(static_cast<int>(CircuitState::kHalfOpen) == 2);
  CHECK(std::string(circuit_state_name(CircuitState::kHalfOpen)) == "half_open");
}

TEST_CASE("breaker: 2xx and 4xx are successes; 5xx and transport errors are failures") {
  CHECK(breaker_success(AttemptResult::http(200)));
  CHECK(breaker_success(AttemptResult::http(400)));
  CHECK(breaker_success(AttemptResult::http(429)));
  CHECK_FALSE(breaker_success(AttemptResult::http(302)));
  CHECK_FALSE(breaker_success(AttemptResult::http(500)));
  CHECK_FALSE(breaker_success(AttemptResult::http(503)));
  CHECK_FALSE(breaker_success(AttemptResult::transport_error(TransportError::kReset)));
}

TEST_CASE("health: failure_threshold failed checks mark unhealthy; success_threshold passes heal") {
  HealthTracker h(HealthConfig{3, 2});
  CHECK(h.healthy());
  CHECK_FALSE(h.record_check(false));
  CHECK_FALSE(h.record_check(false));
  CHECK_FALSE(h.record_check(true));  // resets the failures
  CHECK_FALSE(h.record_check(false));
  CHECK_FALSE(h.record_check(false));
  CHECK(h.healthy());
  CHECK(h.record_check(false));  // third in a row
  CHECK_FALSE(h.healthy());
  CHECK_FALSE(h.record_check(true));
  CHECK_FALSE(h.record_check(false));  // resets the successes
  CHECK_FALSE(h.record_check(true));
  CHECK(h.record_check(true));
  CHECK(h.healthy());
  // Checks that keep passing change nothing.
  CHECK_FALSE(h.record_check(true));
  CHECK(h.healthy());
}

TEST_CASE("health: mark_unhealthy is immediate, recovery still needs success_threshold passes") {
  HealthTracker h(HealthConfig{3, 2});
  CHECK(h.mark_unhealthy());
  CHECK_FALSE(h.healthy());
  CHECK_FALSE(h.mark_unhealthy());
  CHECK_FALSE(h.record_check(true));
  CHECK(h.record_check(true));
  CHECK(h.healthy());
}

TEST_CASE("health: mark_healthy lets a worker in at once and resets the counters") {
  HealthTracker h(HealthConfig{3, 2});
  CHECK_FALSE(h.mark_healthy());  // already healthy: no change
  CHECK(h.mark_unhealthy());
  CHECK_FALSE(h.record_check(true));  // one pass of two
  CHECK(h.mark_healthy());
  CHECK(h.healthy());
  CHECK(h.consecutive_successes() == 0);
  // Failures count from zero again.
  CHECK_FALSE(h.record_check(false));
  CHECK_FALSE(h.record_check(false));
  CHECK(h.record_check(false));
  CHECK_FALSE(h.healthy());
}

TEST_CASE("retry: which outcomes are retryable") {
  for (int s : {408, 429, 500, 502, 503, 504}) {
    CAPTURE(s);
    CHECK(is_retryable(AttemptResult::http(s)));
  }
  for (int s : {200, 201, 400, 401, 403, 404, 413, 422, 501, 505}) {
    CAPTURE(s);
    CHECK_FALSE(is_retryable(AttemptResult::http(s)));
  }
  for (auto e : {TransportError::kRefused, TransportError::kReset, TransportError::kTimeout,
                 TransportError::kOther}) {
    CHECK(is_retryable(AttemptResult::transport_error(e)));
  }
}

TEST_CASE("retry: backoff is initial * multiplier^attempt, truncated, capped at max") {
  RetryConfig c;  // the flags' defaults: 50 ms, x1.5, 30 s
  c.jitter_factor = 0;
  RetryPolicy r(c, 1);
  CHECK(r.base_delay(0) == 50ms);
  CHECK(r.base_delay(1) == 75ms);
  CHECK(r.base_delay(2) == 112ms);  // 112.5
  CHECK(r.base_delay(3) == 168ms);  // 168.75
  CHECK(r.base_delay(4) == 253ms);  // 253.125
  CHECK(r.base_delay(15) == 21894ms);  // 50 * 1.5^15 = 21894.69
  CHECK(r.base_delay(16) == 30000ms);
  CHECK(r.base_delay(1000) == 30000ms);
  CHECK(r.delay(3) == 168ms);  // no jitter

  RetryConfig d{.max_retries = 10, .initial_backoff_ms = 100, .max_backoff_ms = 250,
                .backoff_multiplier = 2.0, .jitter_factor = 0};
  RetryPolicy q(d, 1);
  CHECK(q.delay(0) == 100ms);
  CHECK(q.delay(1) == 200ms);
  CHECK(q.delay(2) == 250ms);
}

TEST_CASE("retry: jitter stays within +-jitter_factor of the base and covers both sides") {
  RetryConfig c{.max_retries = 5, .initial_backoff_ms = 100, .max_backoff_ms = 10000,
                .backoff_multiplier = 2.0, .jitter_factor = 0.5};
  RetryPolicy r(c, 12345);
  std::set<int64_t> seen;
  for (int i = 0; i < 500; ++i) {
    int64_t d = r.delay(2).count();  // base 400
    CHECK(d >= 200);
    CHECK(d <= 600);
    seen.insert(d);
  }
  CHECK(*seen.begin() < 300);
  CHECK(*seen.rbegin() > 500);
  // The cap applies before jitter (SGLang): a capped delay may exceed max by the jitter.
  RetryConfig capped = c;
  capped.max_backoff_ms = 150;
  RetryPolicy rc(capped, 7);
  for (int i = 0; i < 200; ++i) {
    int64_t d = rc.delay(5).count();
    CHECK(d >= 75);
    CHECK(d <= 225);
  }
}

TEST_CASE("retry: decisions per attempt, max_retries attempts in total") {
  RetryConfig c{.max_retries = 3, .initial_backoff_ms = 10, .max_backoff_ms = 1000,
                .backoff_multiplier = 2.0, .jitter_factor = 0};
  RetryPolicy r(c, 1);
  CHECK(r.max_attempts() == 3);
  auto fail = AttemptResult::http(503);
  auto d0 = r.next(0, fail);
  CHECK(d0.verdict == RetryPolicy::Verdict::kRetry);
  CHECK(d0.delay == 10ms);
  auto d1 = r.next(1, AttemptResult::transport_error(TransportError::kRefused));
  CHECK(d1.verdict == RetryPolicy::Verdict::kRetry);
  CHECK(d1.delay == 20ms);
  CHECK(r.next(2, fail).verdict == RetryPolicy::Verdict::kExhausted);
  CHECK(r.next(0, AttemptResult::http(200)).verdict == RetryPolicy::Verdict::kDone);
  CHECK(r.next(0, AttemptResult::http(400)).verdict == RetryPolicy::Verdict::kDone);

  RetryConfig off = c;
  off.disabled = true;
  RetryPolicy none(off, 1);
  CHECK(none.max_attempts() == 1);
  CHECK(none.next(0, fail).verdict == RetryPolicy::Verdict::kExhausted);

  RetryConfig zero = c;
  zero.max_retries = 0;  // at least one attempt
  CHECK(RetryPolicy(zero, 1).max_attempts() == 1);
}

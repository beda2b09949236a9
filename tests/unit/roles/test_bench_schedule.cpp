// --request-rate parsing, Poisson arrivals from numpy's stream, and the dispatcher's
// --max-concurrency semantics, on a clock the test advances.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "roles/bench/bench_schedule.h"

using namespace pdctl::roles;

TEST_CASE("--request-rate accepts inf or a positive number") {
  for (std::string inf : {"inf", "INF", "Infinity", "+inf", " inf "}) {
    CAPTURE(inf);
    auto r = parse_request_rate(inf);
    REQUIRE(r.has_value());
    CHECK(std::isinf(*r));
  }
  CHECK(parse_request_rate("4").value() == 4.0);
  CHECK(parse_request_rate("0.5").value() == 0.5);
  CHECK(parse_request_rate("1e3").value() == 1000.0);
  for (std::string bad : {"", "0", "-1", "-inf", "nan", "fast", "4rps", "1,5", "4 4"}) {
    CAPTURE(bad);
    auto r = parse_request_rate(bad);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.status().message().find("--request-rate") != std::string::npos);
  }
}

TEST_CASE("arrivals: all at once for inf, Poisson gaps from numpy's stream otherwise") {
  NumpyRandom inf_rng(4);
  CHECK(arrival_offsets(3, INFINITY, inf_rng) == std::vector<double>{0, 0, 0});
  // numpy seed 4: exponential(1 / 2.0) x 3 == 1.7060761695490319, 0.39618798815369,
  // 1.800147922886883
  NumpyRandom rng(4);
  auto at = arrival_offsets(4, 2.0, rng);
  REQUIRE(at.size() == 4);
  CHECK(at[0] == 0);
  CHECK(at[1] == 1.7060761695490319);
  CHECK(at[2] == 1.7060761695490319 + 0.39618798815369);
  CHECK(at[3] == 1.7060761695490319 + 0.39618798815369 + 1.800147922886883);
}

TEST_CASE("arrivals average the requested rate") {
  NumpyRandom rng(11);
  auto at = arrival_offsets(20000, 50.0, rng);
  double mean_gap = at.back() / static_cast<double>(at.size() - 1);
  CHECK(mean_gap == doctest::Approx(0.02).epsilon(0.03));
  for (size_t i = 1; i < at.size(); ++i) REQUIRE(at[i] >= at[i - 1]);
}

TEST_CASE("dispatcher without a limit sends each request when it arrives") {
  RequestDispatcher d({0.0, 0.0, 1.0, 2.5}, std::nullopt);
  CHECK(d.next(0.0) == 0u);
  CHECK(d.next(0.0) == 1u);
  CHECK_FALSE(d.next(0.5).has_value());
  CHECK(d.wake_at_s() == 1.0);
  CHECK(d.next(1.0) == 2u);
  CHECK(d.wake_at_s() == 2.5);
  CHECK(d.next(3.0) == 3u);  // late timer: sent at once
  CHECK(d.all_sent());
  CHECK_FALSE(d.wake_at_s().has_value());
  CHECK(d.in_flight() == 4u);
  for (int i = 0; i < 4; ++i) d.on_finished();
  CHECK(d.done());
}

TEST_CASE("--max-concurrency: at most N in flight, the rest wait in arrival order") {
  RequestDispatcher d({0, 0, 0, 0, 0}, 2);
  CHECK(d.next(0) == 0u);
  CHECK(d.next(0) == 1u);
  CHECK_FALSE(d.next(0).has_value());   // both slots taken
  CHECK_FALSE(d.wake_at_s().has_value());  // nothing to wait for but a completion
  d.on_finished();
  CHECK(d.next(0.3) == 2u);
  CHECK_FALSE(d.next(0.3).has_value());
  d.on_finished();
  d.on_finished();
  CHECK(d.next(0.4) == 3u);
  CHECK(d.next(0.4) == 4u);
  CHECK(d.in_flight() == 2u);
  CHECK_FALSE(d.done());
  d.on_finished();
  d.on_finished();
  CHECK(d.done());
}

TEST_CASE("rate and limit together: a request waits for both its time and a slot") {
  RequestDispatcher d({0.0, 0.5, 1.0}, 1);
  CHECK(d.next(0.0) == 0u);
  CHECK_FALSE(d.next(0.6).has_value());  // arrived, but the slot is busy
  d.on_finished();
  CHECK(d.wake_at_s() == 0.5);           // already due
  CHECK(d.next(0.7) == 1u);
  d.on_finished();
  CHECK_FALSE(d.next(0.8).has_value());  // slot free, not arrived yet
  CHECK(d.wake_at_s() == 1.0);
  CHECK(d.next(1.0) == 2u);
}

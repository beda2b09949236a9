// Admission control: slots, FIFO queue, timeouts, 429.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "roles/router/admission.h"

using namespace pdctl::router;
using namespace std::chrono_literals;
using pdctl::Errc;
using pdctl::Status;

namespace {

const TimePoint t0 = TimePoint{} + 1000h;

// Records every callback as "name:ok" or "name:<errc>".
struct Log {
  std::vector<std::string> events;
  AdmissionController::Callback cb(std::string name) {
    return [this, name](Status st) {
      events.push_back(name + ":" + (st.is_ok() ? "ok" : pdctl::errc_name(st.code())));
    };
  }
};

AdmissionConfig config(int64_t max, size_t queue, std::chrono::milliseconds timeout = 10s) {
  return {.max_concurrent = max, .queue_size = queue, .queue_timeout = timeout};
}

}  // namespace

TEST_CASE("admission: slots up to the limit, then the queue, then 429") {
  AdmissionController ac(config(2, 2));
  Log log;
  CHECK(ac.try_acquire());
  CHECK(ac.try_acquire());
  CHECK_FALSE(ac.try_acquire());
  CHECK(ac.in_flight() == 2);
  REQUIRE(ac.enqueue(t0, log.cb("a")));
  REQUIRE(ac.enqueue(t0 + 1s, log.cb("b")));
  auto full = ac.enqueue(t0 + 2s, log.cb("c"));
  CHECK(full.status().code() == Errc::kResourceExhausted);
  CHECK(ac.queued() == 2);
  CHECK(log.events.empty());

  // FIFO: a free slot goes to the oldest waiter, which now holds it.
  ac.release(t0 + 3s);
  CHECK(log.events == std::vector<std::string>{"a:ok"});
  CHECK(ac.in_flight() == 2);
  CHECK(ac.queued() == 1);
  CHECK_FALSE(ac.try_acquire());
  ac.release(t0 + 4s);
  CHECK(log.events.back() == "b:ok");
  CHECK(ac.queued() == 0);
  ac.release(t0 + 5s);
  CHECK(ac.in_flight() == 1);
  CHECK(ac.try_acquire());
}

TEST_CASE("admission: waiters time out after --queue-timeout-secs (408)") {
  AdmissionController ac(config(1, 5, 10s));
  Log log;
  REQUIRE(ac.try_acquire());
  REQUIRE(ac.enqueue(t0, log.cb("a")));
  REQUIRE(ac.enqueue(t0 + 4s, log.cb("b")));
  CHECK(ac.next_deadline() == t0 + 10s);
  CHECK(ac.expire(t0 + 9999ms) == 0);
  CHECK(ac.expire(t0 + 10s) == 1);  // exactly the timeout: expired
  CHECK(log.events == std::vector<std::string>{"a:timeout"});
  CHECK(ac.next_deadline() == t0 + 14s);
  CHECK(ac.expire(t0 + 20s) == 1);
  CHECK(log.events.back() == "b:timeout");
  CHECK_FALSE(ac.next_deadline().has_value());
  CHECK(ac.in_flight() == 1);  // timed-out waiters never held a slot
}

TEST_CASE("admission: a release finds expired waiters first and times them out") {
  AdmissionController ac(config(1, 5, 10s));
  Log log;
  REQUIRE(ac.try_acquire());
  REQUIRE(ac.enqueue(t0, log.cb("old")));
  REQUIRE(ac.enqueue(t0 + 8s, log.cb("new")));
  ac.release(t0 + 12s);  // the timer has not run yet
  CHECK(log.events == std::vector<std::string>{"old:timeout", "new:ok"});
  CHECK(ac.in_flight() == 1);
}

TEST_CASE("admission: a cancelled waiter is never called back") {
  AdmissionController ac(config(1, 5));
  Log log;
  REQUIRE(ac.try_acquire());
  auto a = ac.enqueue(t0, log.cb("a"));
  auto b = ac.enqueue(t0, log.cb("b"));
  REQUIRE(a);
  REQUIRE(b);
  CHECK(ac.cancel(*a));
  CHECK_FALSE(ac.cancel(*a));
  ac.release(t0 + 1s);
  CHECK(log.events == std::vector<std::string>{"b:ok"});
  CHECK_FALSE(ac.cancel(*b));  // already granted
}

TEST_CASE("admission: without a queue the next request is refused at once") {
  AdmissionController ac(config(1, 0));
  Log log;
  REQUIRE(ac.try_acquire());
  CHECK(ac.enqueue(t0, log.cb("a")).status().code() == Errc::kResourceExhausted);
}

TEST_CASE("admission: -1 means no limit") {
  AdmissionController ac(config(-1, 0));
  for (int i = 0; i < 10000; ++i) REQUIRE(ac.try_acquire());
  CHECK(ac.in_flight() == 10000);
  CHECK_FALSE(ac.limited());
  for (int i = 0; i < 10000; ++i) ac.release(t0);
  CHECK(ac.in_flight() == 0);
}

TEST_CASE("admission: a callback may release at once; the slot passes on") {
  AdmissionController ac(config(1, 5));
  Log log;
  REQUIRE(ac.try_acquire());
  REQUIRE(ac.enqueue(t0, [&](Status st) {
    log.events.push_back(std::string("a:") + (st.is_ok() ? "ok" : "err"));
    ac.release(t0 + 1s);  // e.g. the request failed validation right away
  }));
  REQUIRE(ac.enqueue(t0, log.cb("b")));
  ac.release(t0 + 1s);
  CHECK(log.events == std::vector<std::string>{"a:ok", "b:ok"});
  CHECK(ac.in_flight() == 1);
  CHECK(ac.queued() == 0);
}

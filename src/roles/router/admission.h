#pragma once
// Admission control: at most --max-concurrent-requests in flight, then a FIFO queue of
// --queue-size waiting up to --queue-timeout-secs; beyond that, 429 (SGLang's
// concurrency_limit_middleware: queue full or no queue -> 429, waited too long -> 408).
//
// The HTTP layer calls, per request:
//   if (!ac.try_acquire()) { auto t = ac.enqueue(now, cb); if (!t) reply 429; }
//   ... when the request is done (any outcome): ac.release(now);
// and arms a timer at next_deadline() that calls expire(now). A queued request's callback
// runs exactly once, from release() (Status ok: it now holds a slot) or from release() /
// expire() (Status kTimeout: reply 408), unless cancel() removed it first.
//
// Deliberate difference: SGLang's limiter is a token bucket that also refills at a rate
// (--rate-limit-tokens-per-second); this is a plain counting semaphore, which is what the
// flags describe when that rate equals the limit (its default).
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>

#include "common/status.h"
#include "roles/router/router_common.h"

namespace pdctl::router {

struct AdmissionConfig {
  int64_t max_concurrent = 256;  // <= 0 (the flag's -1): no limit
  size_t queue_size = 100;       // 0: no queue
  std::chrono::milliseconds queue_timeout{std::chrono::seconds(60)};
};

class AdmissionController {
 public:
  using Ticket = uint64_t;
  using Callback = std::function<void(Status)>;

  explicit AdmissionController(AdmissionConfig config) : config_(config) {}
  AdmissionController(const AdmissionController&) = delete;
  AdmissionController& operator=(const AdmissionController&) = delete;

  // Takes a slot when one is free and nobody waits for one (FIFO: no overtaking).
  bool try_acquire();
  // Queues a request that try_acquire() refused. Errors: resource_exhausted (queue full, or
  // no queue): reply 429.
  Result<Ticket> enqueue(TimePoint now, Callback on_done);
  // Drops a waiter whose client went away; its callback will not run. False when the
  // ticket is unknown (granted, expired or cancelled already).
  bool cancel(Ticket ticket);
  // Frees a slot and hands it to the oldest waiter; waiters past their timeout met on the
  // way get kTimeout instead.
  void release(TimePoint now);
  // Times out every waiter queued for --queue-timeout-secs or longer; returns how many.
  size_t expire(TimePoint now);
  // When the oldest waiter times out; nullopt when nobody waits.
  std::optional<TimePoint> next_deadline() const;

  int64_t in_flight() const { return in_flight_; }
  size_t queued() const { return queue_.size(); }
  bool limited() const { return config_.max_concurrent > 0; }
  const AdmissionConfig& config() const { return config_; }

 private:
  struct Waiter {
    Ticket ticket;
    TimePoint since;
    Callback on_done;
  };
  bool slot_free() const { return !limited() || in_flight_ < config_.max_concurrent; }
  void grant(TimePoint now);

  AdmissionConfig config_;
  int64_t in_flight_ = 0;
  std::deque<Waiter> queue_;  // oldest first; all share one timeout, so also by deadline
  Ticket next_ticket_ = 1;
};

}  // namespace pdctl::router

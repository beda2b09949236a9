#pragma once
// When each request of the serving benchmark is sent: --request-rate (Poisson arrivals,
// or all at once) and --max-concurrency (at most this many in flight; the others wait in
// arrival order), as sglang.bench_serving's get_request and its asyncio.Semaphore. Pure
// logic over a clock the driver passes in; the driver owns the timer and the sockets.
#include <cstddef>
#include <optional>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "roles/bench/bench_random.h"

namespace pdctl::roles {

// --request-rate: "inf" (also "infinity", any case, as Python's float()) or a positive
// finite number of requests per second. Returns +infinity for inf.
Result<double> parse_request_rate(std::string_view text);

// Arrival times of n requests, in seconds from the start: all 0 for an infinite rate;
// otherwise the first at 0 and then gaps from np.random.exponential(1 / rate), one drawn
// after each request as sglang does. Times are absolute, so a late timer does not delay
// the requests after it (sglang's sleeps add up).
std::vector<double> arrival_offsets(size_t n, double rate, NumpyRandom& rng);

class RequestDispatcher {
 public:
  // `arrivals_s` ascending (from arrival_offsets); no max_concurrency: no limit.
  RequestDispatcher(std::vector<double> arrivals_s, std::optional<int> max_concurrency);

  // The index of the next request to send at `now_s` (seconds from the start), counted
  // as in flight from here; nullopt when none may go now. Call until nullopt.
  std::optional<size_t> next(double now_s);
  // When to look again if nothing finishes first: the next arrival, or nullopt when the
  // next request waits for a free slot (or all were sent).
  std::optional<double> wake_at_s() const;
  // A request in flight ended (success or failure).
  void on_finished();

  size_t sent() const { return sent_; }
  size_t in_flight() const { return in_flight_; }
  bool all_sent() const { return sent_ == arrivals_.size(); }
  bool done() const { return all_sent() && in_flight_ == 0; }

 private:
  bool slot_free() const { return !limit_ || in_flight_ < static_cast<size_t>(*limit_); }

  std::vector<double> arrivals_;
  std::optional<int> limit_;
  size_t sent_ = 0;
  size_t in_flight_ = 0;
};

}  // namespace pdctl::roles

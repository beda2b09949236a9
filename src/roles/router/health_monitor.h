#pragma once
// The router's timers that look at its workers, all on the event loop:
//   - start-up: the configured workers count as unhealthy until their health endpoint
//     first answers 2xx, checked at once and then every --worker-startup-check-interval
//     seconds (SGLang's wait_for_healthy_workers, without blocking: the router already
//     answers, /readiness says 503 meanwhile). When all have passed, or after
//     --worker-startup-timeout-secs with at least one usable worker (one regular, or one
//     prefill and one decode), start-up is over; with none, it fails (the router exits 1,
//     as SGLang's does).
//   - health checks: every --health-check-interval-secs, GET --health-check-endpoint of
//     every worker with --health-check-timeout-secs; the core counts consecutive results
//     against the thresholds. One check per worker at a time.
//   - loads: with a power_of_two policy, every --worker-startup-check-interval seconds
//     (SGLang's load monitor interval), GET /get_load of every worker.
//   - upkeep: RouterCore::maintain (cache_aware eviction) every --eviction-interval-secs.
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>

#include "net/event_loop.h"
#include "roles/router/router_context.h"

namespace pdctl::router {

class HealthMonitor {
 public:
  explicit HealthMonitor(RouterContext& ctx);
  ~HealthMonitor();
  HealthMonitor(const HealthMonitor&) = delete;
  HealthMonitor& operator=(const HealthMonitor&) = delete;

  // Starts every timer. `on_startup` runs once: ok when start-up is over, an error when
  // no usable worker passed a check within --worker-startup-timeout-secs.
  void start(std::function<void(Status)> on_startup);
  // Stops every timer and drops the checks in flight (shutdown).
  void stop();

  bool started_up() const { return started_up_; }
  // Configured workers that have not passed a check yet.
  const std::set<std::string>& pending() const { return pending_; }

  // One GET of `url`'s health endpoint: done(passed, why) with why = what failed.
  net::RequestHandle check(const std::string& url, std::function<void(bool, std::string)> done);
  // For POST /workers: checks `url` now and every --worker-startup-check-interval seconds
  // until it passes (ok) or --worker-startup-timeout-secs pass (unavailable).
  // `still_wanted` is asked before each retry (the admin client may be gone).
  void wait_healthy(const std::string& url, std::function<bool()> still_wanted,
                    std::function<void(Status)> done);
  // GET /get_load of every worker; the core keeps each answer (nullopt on failure).
  // `done` runs when all have answered.
  void refresh_loads(std::function<void()> done);

 private:
  void startup_round();
  void startup_deadline();
  void finish_startup(Status st);
  void health_round();
  struct Wait;
  void wait_step(std::shared_ptr<Wait> wait);

  RouterContext& ctx_;
  net::Timer startup_timer_;
  net::Timer startup_deadline_;
  net::Timer health_timer_;
  net::Timer load_timer_;
  net::Timer maintain_timer_;
  std::set<std::string> pending_;
  std::unordered_map<std::string, net::RequestHandle> in_flight_;  // health checks
  std::function<void(Status)> on_startup_;
  bool started_up_ = false;
  bool stopped_ = false;
  // Checks and waits in flight hold it weakly: they may outlive the monitor.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace pdctl::router

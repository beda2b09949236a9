#pragma once
// The life of a `pdctl up` deployment, on one event loop:
//   starting  - every worker is spawned, then the router once they are all healthy; each
//               child's /health is polled until 200, within --startup-timeout-secs;
//   running   - "ready" is logged with where to send requests;
//   stopping  - on SIGINT/SIGTERM, a child's death (unless --keep-going) or a start-up
//               failure: stages router -> decode -> prefill and serve, each SIGTERM then
//               SIGKILL after --stop-grace-secs; a second signal kills what is left at once;
//   done      - every child reaped, the loop stops.
// Threading: loop thread only.
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "net/event_loop.h"
#include "net/http_client.h"
#include "roles/up/child_process.h"
#include "roles/up/up_options.h"
#include "roles/up/up_plan.h"

namespace pdctl::roles::up {

// Exit codes of `pdctl up` (2, a refused command line or config, is kUsageExitCode).
inline constexpr int kExitStopped = 0;      // stopped by SIGINT/SIGTERM, every child stopped
inline constexpr int kExitChildFailed = 1;  // a child died, failed to start, or was not healthy in time

class Supervisor {
 public:
  Supervisor(net::EventLoop& loop, UpPlan plan, const UpOptions& opts);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Starts the deployment; the loop does the rest and stops when every child is gone.
  void start();
  int exit_code() const { return exit_code_; }

 private:
  enum class Phase { kStartingWorkers, kStartingRouter, kRunning, kStopping, kDone };

  struct Child {
    ChildSpec spec;
    std::unique_ptr<ChildProcess> proc;  // null until spawned
    bool healthy = false;
    net::RequestHandle health_check;     // in flight
    std::chrono::steady_clock::time_point started;
  };

  void spawn_phase(bool router);
  void on_health_tick();
  void check_health(Child& c);
  void on_child_signal();
  void on_stop_signal(int signum);
  void begin_stop(int exit_code, const std::string& why);
  void stop_next_stage();
  void on_stage_grace_expired();
  void maybe_finish();
  void log_ready();
  bool is_router(const Child& c) const { return c.spec.stop_stage == StopStage::kRouter; }

  net::EventLoop& loop_;
  UpOptions opts_;
  std::optional<std::string> entry_url_;
  std::vector<Child> children_;
  Phase phase_ = Phase::kStartingWorkers;
  int exit_code_ = kExitStopped;
  int stage_ = -1;  // StopStage being stopped

  net::HttpClient http_;
  net::Timer health_timer_;
  net::Timer grace_timer_;
  net::Timer output_timer_;  // bounds the wait for children's last output
  std::unique_ptr<net::SignalWatcher> child_signals_;
  std::unique_ptr<net::SignalWatcher> stop_signals_;
};

}  // namespace pdctl::roles::up

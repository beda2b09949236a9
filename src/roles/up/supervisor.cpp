#include "roles/up/supervisor.h"

#include <csignal>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "net/url.h"

namespace pdctl::roles::up {

namespace {

using Clock = std::chrono::steady_clock;

// How often /health is polled while a child starts.
constexpr std::chrono::milliseconds kHealthPollInterval{100};
// After the last child exited: how long its remaining output may take to arrive (a
// grandchild holding the pipe must not keep `up` alive).
constexpr std::chrono::milliseconds kOutputDrainLimit{2000};

net::ClientOptions health_client_options() {
  net::ClientOptions o;
  o.connect_timeout = std::chrono::milliseconds(1000);
  o.response_header_timeout = std::chrono::milliseconds(2000);
  o.idle_read_timeout = std::chrono::milliseconds(2000);
  o.max_connections_per_upstream = 2;
  return o;
}

const char* stage_name(int stage) {
  switch (static_cast<StopStage>(stage)) {
    case StopStage::kRouter: return "router";
    case StopStage::kDecode: return "decode workers";
    case StopStage::kPrefillAndServe: return "prefill and serve workers";
  }
  return "children";
}

std::chrono::milliseconds secs(double s) {
  return std::chrono::milliseconds(static_cast<int64_t>(s * 1000));
}

}  // namespace

Supervisor::Supervisor(net::EventLoop& loop, UpPlan plan, const UpOptions& opts)
    : loop_(loop),
      opts_(opts),
      entry_url_(std::move(plan.entry_url)),
      http_(loop, health_client_options()),
      health_timer_(loop),
      grace_timer_(loop),
      output_timer_(loop) {
  for (ChildSpec& spec : plan.children) children_.push_back(Child{std::move(spec), nullptr, false, {}, {}});
}

// Children still running are killed and reaped by ~ChildProcess.
Supervisor::~Supervisor() = default;

void Supervisor::start() {
  // Watchers first: a child that dies at once is still seen.
  child_signals_ = std::make_unique<net::SignalWatcher>(loop_, std::initializer_list<int>{SIGCHLD},
                                                        [this](int) { on_child_signal(); });
  stop_signals_ = std::make_unique<net::SignalWatcher>(loop_, std::initializer_list<int>{SIGINT, SIGTERM, SIGHUP},
                                                       [this](int signum) { on_stop_signal(signum); });
  health_timer_.start(kHealthPollInterval, kHealthPollInterval, [this] { on_health_tick(); });
  spawn_phase(/*router=*/false);
}

void Supervisor::spawn_phase(bool router) {
  phase_ = router ? Phase::kStartingRouter : Phase::kStartingWorkers;
  for (Child& c : children_) {
    if (is_router(c) != router) continue;
    auto proc = ChildProcess::spawn(loop_, c.spec, [this] { maybe_finish(); });
    if (!proc) {
      spdlog::error("cannot start {}: {}", c.spec.name, proc.status().message());
      begin_stop(kExitChildFailed, "a child could not be started");
      return;
    }
    c.proc = std::move(*proc);
    c.started = Clock::now();
    std::string cpus = c.spec.cpus.empty() ? "" : fmt::format(" on CPUs {}", fmt::join(c.spec.cpus, ","));
    spdlog::info("started {} (pid {}{}): pdctl {}", c.spec.name, c.proc->pid(), cpus, fmt::join(c.spec.args, " "));
  }
  on_health_tick();  // nothing to wait for (no router): move on now
}

void Supervisor::on_health_tick() {
  if (phase_ != Phase::kStartingWorkers && phase_ != Phase::kStartingRouter) return;
  const bool router_phase = phase_ == Phase::kStartingRouter;
  bool all_healthy = true;
  for (Child& c : children_) {
    if (is_router(c) != router_phase || c.healthy || !c.proc) continue;
    all_healthy = false;
    const double waited = std::chrono::duration<double>(Clock::now() - c.started).count();
    if (waited > opts_.startup_timeout_secs) {
      spdlog::error("{} is not healthy after {:.0f} s (GET {} did not answer 200; --startup-timeout-secs)",
                    c.spec.name, opts_.startup_timeout_secs, c.spec.health_url);
      begin_stop(kExitChildFailed, "a child did not become healthy in time");
      return;
    }
    if (!c.health_check.active()) check_health(c);
  }
  if (!all_healthy) return;
  if (!router_phase) {
    spawn_phase(/*router=*/true);
    return;
  }
  phase_ = Phase::kRunning;
  log_ready();
}

void Supervisor::check_health(Child& c) {
  auto url = net::parse_url(c.spec.health_url);
  if (!url) {
    spdlog::error("{}: {}", c.spec.name, url.status().message());
    begin_stop(kExitChildFailed, "bad health URL");
    return;
  }
  net::ClientRequest req;
  req.method = "GET";
  req.target = url->target;
  Child* child = &c;  // children_ does not change size after construction
  c.health_check = http_.fetch(url->endpoint, std::move(req), [this, child](Result<net::HttpResponse> r) {
    if (!r || r->status != 200 || child->healthy) return;  // not yet: the next tick asks again
    if (phase_ != Phase::kStartingWorkers && phase_ != Phase::kStartingRouter) return;
    child->healthy = true;
    spdlog::info("{} is healthy at {} ({:.1f} s)", child->spec.name, child->spec.url,
                 std::chrono::duration<double>(Clock::now() - child->started).count());
    on_health_tick();
  });
}

void Supervisor::log_ready() {
  std::vector<std::string> parts;
  for (const Child& c : children_) parts.push_back(fmt::format("{} {} (pid {})", c.spec.name, c.spec.url, c.proc->pid()));
  if (entry_url_) {
    spdlog::info("ready: send requests to {} (OpenAI API under /v1, SGLang's /generate); children: {}", *entry_url_,
                 fmt::join(parts, ", "));
  } else {
    spdlog::info("ready: children: {}", fmt::join(parts, ", "));
  }
  spdlog::info("Ctrl-C (SIGINT) or SIGTERM stops the deployment");
}

void Supervisor::on_child_signal() {
  for (Child& c : children_) {
    if (!c.proc || c.proc->exited() || !c.proc->poll_exit()) continue;
    c.health_check.cancel();
    const std::string what = c.proc->describe_exit();
    if (phase_ == Phase::kStopping || phase_ == Phase::kDone) {
      if (static_cast<int>(c.spec.stop_stage) == stage_) {
        spdlog::info("{} (pid {}) stopped: {}", c.spec.name, c.proc->pid(), what);
      } else {
        spdlog::warn("{} (pid {}) {} while the deployment was stopping", c.spec.name, c.proc->pid(), what);
      }
      continue;
    }
    spdlog::error("{} (pid {}) {}", c.spec.name, c.proc->pid(), what);
    exit_code_ = kExitChildFailed;
    if (phase_ != Phase::kRunning) {
      begin_stop(kExitChildFailed, fmt::format("{} died while starting", c.spec.name));
    } else if (!opts_.keep_going) {
      begin_stop(kExitChildFailed, fmt::format("{} died (--keep-going keeps the others running)", c.spec.name));
    } else {
      spdlog::warn("--keep-going: the other children keep running; {} is not restarted", c.spec.name);
    }
  }
  if (phase_ == Phase::kRunning) {
    bool any_running = false;
    for (const Child& c : children_) any_running |= c.proc && !c.proc->exited();
    if (!any_running) begin_stop(kExitChildFailed, "every child has exited");
  }
  if (phase_ != Phase::kStopping) return;
  // The stage being stopped is over: on to the next.
  bool stage_running = false;
  for (const Child& c : children_) {
    stage_running |= c.proc && !c.proc->exited() && static_cast<int>(c.spec.stop_stage) == stage_;
  }
  if (!stage_running) {
    grace_timer_.cancel();
    stop_next_stage();
  }
}

void Supervisor::on_stop_signal(int signum) {
  if (phase_ == Phase::kStopping || phase_ == Phase::kDone) {
    spdlog::warn("second signal ({}): killing every child now", ::strsignal(signum));
    for (Child& c : children_) {
      if (c.proc) c.proc->signal(SIGKILL);
    }
    return;
  }
  begin_stop(exit_code_, fmt::format("signal {} ({})", signum, ::strsignal(signum)));
}

void Supervisor::begin_stop(int exit_code, const std::string& why) {
  exit_code_ = std::max(exit_code_, exit_code);
  if (phase_ == Phase::kStopping || phase_ == Phase::kDone) return;
  phase_ = Phase::kStopping;
  health_timer_.cancel();
  for (Child& c : children_) c.health_check.cancel();
  spdlog::info("stopping the deployment ({}): router, then decode, then prefill and serve workers", why);
  stage_ = -1;
  stop_next_stage();
}

void Supervisor::stop_next_stage() {
  while (++stage_ <= static_cast<int>(StopStage::kPrefillAndServe)) {
    std::vector<std::string> names;
    for (Child& c : children_) {
      if (!c.proc || c.proc->exited() || static_cast<int>(c.spec.stop_stage) != stage_) continue;
      c.proc->signal(SIGTERM);
      names.push_back(c.spec.name);
    }
    if (names.empty()) continue;
    spdlog::info("stopping the {}: SIGTERM to {} (SIGKILL after {} s)", stage_name(stage_), fmt::join(names, ", "),
                 opts_.stop_grace_secs);
    grace_timer_.start(secs(opts_.stop_grace_secs), [this] { on_stage_grace_expired(); });
    return;
  }
  maybe_finish();
}

void Supervisor::on_stage_grace_expired() {
  for (Child& c : children_) {
    if (!c.proc || c.proc->exited() || static_cast<int>(c.spec.stop_stage) != stage_) continue;
    spdlog::warn("{} (pid {}) still running {} s after SIGTERM: SIGKILL", c.spec.name, c.proc->pid(),
                 opts_.stop_grace_secs);
    c.proc->signal(SIGKILL);
  }
  // Its exit arrives as SIGCHLD and moves on to the next stage.
}

void Supervisor::maybe_finish() {
  if (phase_ != Phase::kStopping) return;
  if (stage_ <= static_cast<int>(StopStage::kPrefillAndServe)) return;  // still stopping
  bool output_open = false;
  for (const Child& c : children_) output_open |= c.proc && !c.proc->output_closed();
  if (output_open && !output_timer_.active()) {
    output_timer_.start(kOutputDrainLimit, [this] {
      for (Child& c : children_) {
        if (c.proc) c.proc->close_output();
      }
      maybe_finish();
    });
    return;
  }
  if (output_open) return;
  output_timer_.cancel();
  phase_ = Phase::kDone;
  spdlog::info("every child has stopped; exit code {}", exit_code_);
  loop_.stop();
}

}  // namespace pdctl::roles::up

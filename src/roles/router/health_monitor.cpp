#include "roles/router/health_monitor.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace pdctl::router {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

bool uses_power_of_two(RouterCore& core) {
  if (core.pd_mode()) {
    return core.policy(WorkerType::kPrefill).name() == "power_of_two" ||
           core.policy(WorkerType::kDecode).name() == "power_of_two";
  }
  return core.policy(WorkerType::kRegular).name() == "power_of_two";
}

// One usable worker of each type the mode needs.
bool usable(const RouterCore& core) {
  bool regular = false, prefill = false, decode = false;
  for (const auto& w : core.workers().all()) {
    if (!w->healthy()) continue;
    switch (w->type()) {
      case WorkerType::kRegular: regular = true; break;
      case WorkerType::kPrefill: prefill = true; break;
      case WorkerType::kDecode: decode = true; break;
    }
  }
  return core.pd_mode() ? prefill && decode : regular;
}

}  // namespace

HealthMonitor::HealthMonitor(RouterContext& ctx)
    : ctx_(ctx),
      startup_timer_(ctx.loop),
      startup_deadline_(ctx.loop),
      health_timer_(ctx.loop),
      load_timer_(ctx.loop),
      maintain_timer_(ctx.loop) {}

HealthMonitor::~HealthMonitor() { stop(); }

void HealthMonitor::start(std::function<void(Status)> on_startup) {
  on_startup_ = std::move(on_startup);
  const roles::RouterOptions& o = ctx_.opts;

  if (o.worker_startup_timeout_secs > 0) {
    for (const auto& w : ctx_.core.workers().all()) {
      pending_.insert(w->url());
      w->health().mark_unhealthy();
    }
  }
  if (pending_.empty()) {
    // Reported from the loop, never from inside start().
    startup_timer_.start(milliseconds(0), [this] { finish_startup(Status::ok()); });
  } else {
    spdlog::info("router: waiting up to {} s for {} worker(s) to pass a health check", o.worker_startup_timeout_secs,
                 pending_.size());
    startup_round();
    milliseconds every = seconds(o.worker_startup_check_interval);
    startup_timer_.start(every, every, [this] { startup_round(); });
    startup_deadline_.start(seconds(o.worker_startup_timeout_secs), [this] { startup_deadline(); });
  }

  milliseconds health_every = seconds(o.health_check_interval_secs);
  health_timer_.start(health_every, health_every, [this] { health_round(); });
  if (uses_power_of_two(ctx_.core)) {
    milliseconds load_every = seconds(o.worker_startup_check_interval);
    refresh_loads({});
    load_timer_.start(load_every, load_every, [this] { refresh_loads({}); });
  }
  milliseconds evict_every = seconds(o.eviction_interval_secs);
  maintain_timer_.start(evict_every, evict_every, [this] { ctx_.core.maintain(ctx_.now()); });
}

void HealthMonitor::stop() {
  stopped_ = true;
  startup_timer_.cancel();
  startup_deadline_.cancel();
  health_timer_.cancel();
  load_timer_.cancel();
  maintain_timer_.cancel();
  for (auto& [url, h] : in_flight_) h.cancel();
  in_flight_.clear();
}

net::RequestHandle HealthMonitor::check(const std::string& url, std::function<void(bool, std::string)> done) {
  auto up = ctx_.upstreams.get(url);
  if (!up) {
    done(false, up.status().message());
    return {};
  }
  net::ClientRequest req;
  req.method = "GET";
  req.target = (*up)->prefix + ctx_.opts.health_check_endpoint;
  req.response_header_timeout = seconds(ctx_.opts.health_check_timeout_secs);
  req.idle_read_timeout = seconds(ctx_.opts.health_check_timeout_secs);
  req.max_body_bytes = 1u << 20;
  return ctx_.control.fetch((*up)->endpoint, std::move(req),
                            [done = std::move(done)](Result<net::HttpResponse> r) {
                              if (!r) {
                                done(false, r.status().message());
                              } else if (r->status < 200 || r->status >= 300) {
                                done(false, fmt::format("health endpoint answered {}", r->status));
                              } else {
                                done(true, {});
                              }
                            });
}

void HealthMonitor::startup_round() {
  std::vector<std::string> urls(pending_.begin(), pending_.end());
  for (const std::string& url : urls) {
    std::shared_ptr<Worker> w = ctx_.core.find_worker(url);
    if (!w) {
      pending_.erase(url);  // removed meanwhile
      continue;
    }
    if (in_flight_[url].active()) continue;
    std::weak_ptr<bool> alive = alive_;
    in_flight_[url] = check(url, [this, alive, w](bool passed, const std::string& why) {
      if (alive.expired() || stopped_) return;
      in_flight_.erase(w->url());
      if (!passed) {
        spdlog::debug("router: start-up check of {} failed: {}", w->url(), why);
        return;
      }
      if (pending_.erase(w->url()) == 0) return;
      if (w->registered()) w->health().mark_healthy();
      spdlog::info("router: worker {} is up", w->url());
      if (pending_.empty() && !started_up_) finish_startup(Status::ok());
    });
  }
  if (pending_.empty() && !started_up_) finish_startup(Status::ok());
}

void HealthMonitor::startup_deadline() {
  if (started_up_) return;
  std::string waiting;
  for (const auto& u : pending_) waiting += (waiting.empty() ? "" : ", ") + u;
  if (usable(ctx_.core)) {
    spdlog::warn("router: after {} s these workers have not passed a health check: {}; they stay unhealthy "
                 "until they pass --health-success-threshold checks",
                 ctx_.opts.worker_startup_timeout_secs, waiting);
    finish_startup(Status::ok());
    return;
  }
  finish_startup(Status::unavailable(fmt::format(
      "no usable {} passed a health check within --worker-startup-timeout-secs ({} s); waiting for: {}",
      ctx_.core.pd_mode() ? "prefill and decode workers" : "worker", ctx_.opts.worker_startup_timeout_secs, waiting)));
}

void HealthMonitor::finish_startup(Status st) {
  if (started_up_) return;
  started_up_ = true;
  startup_timer_.cancel();
  startup_deadline_.cancel();
  pending_.clear();  // the periodic health checks take over
  if (st.is_ok()) spdlog::info("router: ready");
  if (on_startup_) {
    auto cb = std::move(on_startup_);
    on_startup_ = nullptr;
    cb(std::move(st));
  }
}

void HealthMonitor::health_round() {
  for (const auto& w : ctx_.core.workers().all()) {
    if (pending_.count(w->url()) != 0 || in_flight_[w->url()].active()) continue;
    std::weak_ptr<bool> alive = alive_;
    in_flight_[w->url()] = check(w->url(), [this, alive, w](bool passed, const std::string& why) {
      if (alive.expired() || stopped_) return;
      in_flight_.erase(w->url());
      if (!passed) spdlog::debug("router: health check of {} failed: {}", w->url(), why);
      ctx_.core.record_health_check(*w, passed);
    });
  }
  // Entries of removed workers whose checks ended.
  std::erase_if(in_flight_, [](const auto& kv) { return !kv.second.active(); });
}

struct HealthMonitor::Wait {
  std::string url;
  std::function<bool()> still_wanted;
  std::function<void(Status)> done;
  TimePoint deadline;
  net::Timer timer;
};

void HealthMonitor::wait_healthy(const std::string& url, std::function<bool()> still_wanted,
                                 std::function<void(Status)> done) {
  auto wait = std::make_shared<Wait>();
  wait->url = url;
  wait->still_wanted = std::move(still_wanted);
  wait->done = std::move(done);
  wait->deadline = ctx_.now() + seconds(ctx_.opts.worker_startup_timeout_secs);
  wait->timer = net::Timer(ctx_.loop);
  wait_step(std::move(wait));
}

void HealthMonitor::wait_step(std::shared_ptr<Wait> wait) {
  std::weak_ptr<bool> alive = alive_;
  // The wait lives in the callbacks: the check's, then its timer's (which it owns; the
  // cycle ends when the timer fires or the loop stops).
  check(wait->url, [this, alive, wait](bool passed, const std::string& why) {
    if (alive.expired() || stopped_) return;
    if (passed) return wait->done(Status::ok());
    if (ctx_.now() >= wait->deadline) {
      return wait->done(Status::unavailable(
          fmt::format("worker {} did not pass a health check within --worker-startup-timeout-secs ({} s): {}",
                      wait->url, ctx_.opts.worker_startup_timeout_secs, why)));
    }
    if (!wait->still_wanted()) return;
    wait->timer.start(seconds(ctx_.opts.worker_startup_check_interval), [this, alive, wait] {
      if (!alive.expired() && !stopped_) wait_step(wait);
    });
  });
}

void HealthMonitor::refresh_loads(std::function<void()> done) {
  auto workers = ctx_.core.workers().all();
  if (workers.empty()) {
    if (done) done();
    return;
  }
  auto left = std::make_shared<size_t>(workers.size());
  auto finish_one = [left, done] {
    if (--*left == 0 && done) done();
  };
  std::weak_ptr<bool> alive = alive_;
  for (const auto& w : workers) {
    auto up = ctx_.upstreams.get(w->url());
    if (!up) {
      ctx_.core.set_reported_load(*w, std::nullopt);
      finish_one();
      continue;
    }
    net::ClientRequest req;
    req.method = "GET";
    req.target = (*up)->prefix + "/get_load";
    req.response_header_timeout = seconds(ctx_.opts.health_check_timeout_secs);
    req.idle_read_timeout = seconds(ctx_.opts.health_check_timeout_secs);
    req.max_body_bytes = 1u << 20;
    ctx_.control.fetch((*up)->endpoint, std::move(req),
                       [this, alive, w, finish_one](Result<net::HttpResponse> r) {
                         if (alive.expired()) return;
                         std::optional<int64_t> load;
                         if (r && r->status >= 200 && r->status < 300) {
                           auto j = nlohmann::json::parse(r->body, nullptr, false);
                           if (!j.is_discarded()) load = parse_worker_load(j);
                         }
                         ctx_.core.set_reported_load(*w, load);
                         finish_one();
                       });
  }
}

}  // namespace pdctl::router

#include "roles/router/router_core.h"

#include <random>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "roles/router/cache_aware_policy.h"

namespace pdctl::router {
namespace {

size_t slot(WorkerType t) { return static_cast<size_t>(t); }

}  // namespace

RouterCoreConfig core_config_from_options(const roles::RouterOptions& o) {
  RouterCoreConfig c;
  c.pd_mode = o.pd_disaggregation;
  c.policy = o.policy;
  c.prefill_policy = o.prefill_policy.value_or(o.policy);
  c.decode_policy = o.decode_policy.value_or(o.policy);

  c.cache.cache_threshold = o.cache_threshold;
  c.cache.balance_abs_threshold = o.balance_abs_threshold;
  c.cache.balance_rel_threshold = o.balance_rel_threshold;
  c.cache.eviction_interval = std::chrono::seconds(o.eviction_interval_secs);
  c.cache.max_tree_size = static_cast<size_t>(o.max_tree_size);

  c.health.failure_threshold = static_cast<uint32_t>(o.health_failure_threshold);
  c.health.success_threshold = static_cast<uint32_t>(o.health_success_threshold);

  c.breaker.enabled = !o.disable_circuit_breaker;
  c.breaker.failure_threshold = static_cast<uint32_t>(o.cb_failure_threshold);
  c.breaker.success_threshold = static_cast<uint32_t>(o.cb_success_threshold);
  c.breaker.timeout = std::chrono::seconds(o.cb_timeout_duration_secs);
  c.breaker.window = std::chrono::seconds(o.cb_window_duration_secs);

  c.retry.disabled = o.disable_retries;
  c.retry.max_retries = static_cast<uint32_t>(o.retry_max_retries);
  c.retry.initial_backoff_ms = static_cast<uint64_t>(o.retry_initial_backoff_ms);
  c.retry.max_backoff_ms = static_cast<uint64_t>(o.retry_max_backoff_ms);
  c.retry.backoff_multiplier = o.retry_backoff_multiplier;
  c.retry.jitter_factor = o.retry_jitter_factor;

  c.admission.max_concurrent = o.max_concurrent_requests;
  c.admission.queue_size = static_cast<size_t>(o.queue_size);
  c.admission.queue_timeout = std::chrono::seconds(o.queue_timeout_secs);
  return c;
}

RouterCore::RouterCore(RouterCoreConfig config, uint64_t seed,
                       std::shared_ptr<prometheus::Registry> registry)
    : config_(std::move(config)),
      registry_(config_.health, config_.breaker),
      metrics_(std::move(registry)),
      admission_(config_.admission),
      retry_(config_.retry, seed + 4),
      rng_(seed + 5) {}

RouterCore::~RouterCore() = default;

Result<std::unique_ptr<RouterCore>> RouterCore::create(RouterCoreConfig config,
                                                       std::optional<uint64_t> seed, TimePoint,
                                                       std::shared_ptr<prometheus::Registry> registry) {
  uint64_t s = seed ? *seed : (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
  std::unique_ptr<RouterCore> core(new RouterCore(std::move(config), s, std::move(registry)));
  const RouterCoreConfig& c = core->config_;
  if (c.pd_mode) {
    PDCTL_ASSIGN_OR_RETURN(core->policies_[slot(WorkerType::kPrefill)],
                           make_policy(c.prefill_policy, c.cache, s + 1));
    PDCTL_ASSIGN_OR_RETURN(core->policies_[slot(WorkerType::kDecode)],
                           make_policy(c.decode_policy, c.cache, s + 2));
  } else {
    PDCTL_ASSIGN_OR_RETURN(core->policies_[slot(WorkerType::kRegular)],
                           make_policy(c.policy, c.cache, s + 3));
  }
  return core;
}

Policy& RouterCore::policy(WorkerType type) {
  auto& p = policies_[slot(type)];
  assert(p && "no policy for this worker type in this mode");
  return *p;
}

Status RouterCore::add_configured_workers(const roles::RouterOptions& opts, TimePoint now) {
  auto add = [&](WorkerSpec spec) -> Status {
    auto w = add_worker(std::move(spec), now);
    return w.status();
  };
  if (config_.pd_mode) {
    for (const auto& p : opts.prefill) {
      PDCTL_RETURN_IF_ERROR(add({p.url, WorkerType::kPrefill, p.bootstrap_port}));
    }
    for (const auto& d : opts.decode_urls) PDCTL_RETURN_IF_ERROR(add({d, WorkerType::kDecode, {}}));
  } else {
    for (const auto& u : opts.worker_urls) PDCTL_RETURN_IF_ERROR(add({u, WorkerType::kRegular, {}}));
  }
  return Status::ok();
}

Result<std::shared_ptr<Worker>> RouterCore::add_worker(WorkerSpec spec, TimePoint now) {
  bool fits = config_.pd_mode ? spec.type != WorkerType::kRegular : spec.type == WorkerType::kRegular;
  if (!fits) {
    return Status::invalid_argument(fmt::format(
        "a {} worker does not belong to a router in {} mode", worker_type_name(spec.type),
        config_.pd_mode ? "PD" : "regular"));
  }
  PDCTL_ASSIGN_OR_RETURN(auto w, registry_.add(std::move(spec), now));
  policy(w->type()).on_worker_added(*w);
  metrics_.set_active_workers(registry_.size());
  spdlog::info("router: added {} worker {}", worker_type_name(w->type()), w->url());
  return w;
}

Status RouterCore::remove_worker(std::string_view url) {
  PDCTL_ASSIGN_OR_RETURN(auto w, registry_.remove(url));
  policy(w->type()).on_worker_removed(*w);
  metrics_.forget_worker(w->url());
  metrics_.set_active_workers(registry_.size());
  spdlog::info("router: removed {} worker {}", worker_type_name(w->type()), w->url());
  return Status::ok();
}

nlohmann::json RouterCore::workers_json(TimePoint now) {
  for (const auto& w : registry_.all()) note_transition(*w, w->breaker().advance(now));
  return registry_.to_json();
}

void RouterCore::record_health_check(Worker& worker, bool passed) {
  if (!worker.registered()) return;
  if (worker.health().record_check(passed)) {
    if (worker.healthy()) {
      spdlog::info("router: worker {} is healthy again", worker.url());
    } else {
      spdlog::warn("router: worker {} is unhealthy after {} failed health checks", worker.url(),
                   config_.health.failure_threshold);
    }
  }
}

bool RouterCore::needs_request_text() const {
  for (const auto& p : policies_) {
    if (p && p->needs_request_text()) return true;
  }
  return false;
}

void RouterCore::note_transition(const Worker& w, std::optional<CircuitTransition> t) {
  if (!t) return;
  metrics_.record_cb_transition(w.url(), t->from, t->to);
  if (t->to == CircuitState::kOpen) {
    spdlog::warn("router: circuit breaker of {} opened ({} -> open)", w.url(), circuit_state_name(t->from));
  } else {
    spdlog::info("router: circuit breaker of {}: {} -> {}", w.url(), circuit_state_name(t->from),
                 circuit_state_name(t->to));
  }
}

Result<RouterCore::Pick> RouterCore::pick(WorkerType type, std::string_view text, TimePoint now) {
  std::vector<std::shared_ptr<Worker>> candidates;
  bool any = false;
  for (const auto& w : registry_.all()) {
    if (w->type() != type) continue;
    any = true;
    note_transition(*w, w->breaker().advance(now));
    if (w->available(now)) candidates.push_back(w);
  }
  const char* name = worker_type_name(type);
  if (!any) {
    return Status::unavailable(fmt::format(
        "No {0} workers available. Please check if {0} servers are configured and healthy.", name));
  }
  if (candidates.empty()) {
    return Status::unavailable(fmt::format("No available {} workers (all circuits open or unhealthy)", name));
  }
  Policy& p = policy(type);
  Selection sel = p.select(candidates, text, now);
  std::shared_ptr<Worker> w = candidates.at(sel.index);
  w->count_processed();
  metrics_.record_processed_request(w->url());
  metrics_.record_policy_decision(p.name(), w->url());
  switch (sel.decision) {
    case Decision::kPlain: break;
    case Decision::kCacheHit: metrics_.record_cache_hit(); break;
    case Decision::kCacheMiss: metrics_.record_cache_miss(); break;
    case Decision::kLoadBalance: metrics_.record_load_balancing_event(sel.max_load, sel.min_load); break;
  }
  Pick out;
  out.load = LoadGuard(w);
  out.worker = std::move(w);
  out.decision = sel.decision;
  return out;
}

Result<RouterCore::Pick> RouterCore::pick_worker(std::string_view text, TimePoint now) {
  if (config_.pd_mode) return Status::internal("pick_worker is for regular mode; use pick_pair");
  return pick(WorkerType::kRegular, text, now);
}

Result<RouterCore::PdPick> RouterCore::pick_pair(std::string_view text, TimePoint now) {
  if (!config_.pd_mode) return Status::internal("pick_pair is for PD mode; use pick_worker");
  PdPick pair;
  PDCTL_ASSIGN_OR_RETURN(pair.prefill, pick(WorkerType::kPrefill, text, now));
  PDCTL_ASSIGN_OR_RETURN(pair.decode, pick(WorkerType::kDecode, text, now));
  return pair;
}

void RouterCore::feed_breaker(Worker& worker, bool ok, TimePoint now) {
  if (!worker.registered()) return;
  metrics_.record_cb_outcome(worker.url(), ok);
  note_transition(worker, worker.breaker().advance(now));
  note_transition(worker, worker.breaker().record(ok, now));
}

void RouterCore::record_outcome(Worker& worker, const AttemptResult& result, TimePoint now) {
  if (!worker.registered()) return;
  feed_breaker(worker, breaker_success(result), now);
  if (result.transport == TransportError::kRefused && worker.health().mark_unhealthy()) {
    spdlog::warn("router: worker {} refused a connection; marked unhealthy until its health checks pass",
                 worker.url());
  }
}

void RouterCore::record_pair_outcome(PdPick& pair, const AttemptResult& final_result, TimePoint now) {
  const bool ok = breaker_success(final_result);
  feed_breaker(*pair.prefill.worker, ok, now);
  feed_breaker(*pair.decode.worker, ok, now);
}

void RouterCore::maintain(TimePoint now) {
  for (auto& p : policies_) {
    if (p) p->maintain(now);
  }
}

std::string RouterCore::metrics_text(TimePoint now) {
  for (const auto& w : registry_.all()) {
    note_transition(*w, w->breaker().advance(now));
    metrics_.set_worker_health(w->url(), w->healthy());
    metrics_.set_worker_load(w->url(), w->in_flight());
    metrics_.set_cb_state(w->url(), w->breaker().current());
    if (auto* ca = dynamic_cast<const CacheAwarePolicy*>(policies_[slot(w->type())].get())) {
      metrics_.set_tree_size(w->url(), ca->tree().tenant_size(w->url()));
    }
  }
  metrics_.set_active_workers(registry_.size());
  metrics_.set_admission(admission_.in_flight(), admission_.queued());
  return metrics_.serialize();
}

}  // namespace pdctl::router

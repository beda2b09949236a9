#pragma once
// The router's core, without networking: the one object the router's HTTP layer (libuv,
// one event-loop thread) talks to. Per client request it goes:
//
//   1. admission().try_acquire() or admission().enqueue(now, cb)     -> 429 / 408
//   2. text = needs_request_text() ? routing_text(route, body) : ""  (pd_request.h)
//   3. attempt n = 0, 1, ...:
//        auto pair = pick_pair(text, now)         // 503 on error; holds both loads
//        auto body = make_pd_body(route, request, *pair->prefill.worker, rng())
//        ... send body to both workers ...
//        record_outcome(*pair->prefill.worker, prefill_result, now)
//        record_outcome(*pair->decode.worker, decode_result, now)
//        d = retry().next(n, final_result)        // kRetry: timer d.delay, then n + 1
//   4. merge_logprobs / merge_stream_logprobs when wants_logprobs()
//   5. drop the pair (its LoadGuards end the in-flight count), admission().release(now),
//      metrics().record_request_duration(...)
//
// plus, on timers: record_health_check() every --health-check-interval-secs,
// set_reported_load() from the workers' /get_load, maintain(now), admission().expire(now),
// and metrics_text(now) for GET /metrics.
#include <array>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "roles/router/admission.h"
#include "roles/router/policy.h"
#include "roles/router/retry.h"
#include "roles/router/router_common.h"
#include "roles/router/router_metrics.h"
#include "roles/router/router_options.h"
#include "roles/router/worker.h"

namespace pdctl::router {

struct RouterCoreConfig {
  bool pd_mode = false;
  std::string policy = "cache_aware";  // regular mode
  std::string prefill_policy = "cache_aware";
  std::string decode_policy = "cache_aware";
  CacheAwareConfig cache;
  HealthConfig health;
  CircuitBreakerConfig breaker;
  RetryConfig retry;
  AdmissionConfig admission;
};

// The flags' values as the core's configuration (--prefill-policy and --decode-policy
// default to --policy; --disable-* switch the feature off).
RouterCoreConfig core_config_from_options(const roles::RouterOptions& opts);

class RouterCore {
 public:
  // seed: every random choice (policies, jitter, rooms) derives from it; nullopt draws one
  // from std::random_device. Errors: invalid_argument (unknown policy).
  static Result<std::unique_ptr<RouterCore>> create(
      RouterCoreConfig config, std::optional<uint64_t> seed, TimePoint now,
      std::shared_ptr<prometheus::Registry> registry = nullptr);
  RouterCore(const RouterCore&) = delete;
  RouterCore& operator=(const RouterCore&) = delete;
  ~RouterCore();

  bool pd_mode() const { return config_.pd_mode; }

  // Workers ------------------------------------------------------------------------------
  // Adds --worker-urls, or --prefill / --decode in PD mode.
  Status add_configured_workers(const roles::RouterOptions& opts, TimePoint now);
  // POST /workers. Errors: invalid_argument (bad spec, or a type the mode does not use:
  // regular in PD mode, prefill/decode otherwise), already_exists.
  Result<std::shared_ptr<Worker>> add_worker(WorkerSpec spec, TimePoint now);
  // DELETE /workers/{url}: also drops the worker's cache_aware tenant and gauges; requests
  // still running on it finish. Errors: not_found.
  Status remove_worker(std::string_view url);
  std::shared_ptr<Worker> find_worker(std::string_view url) const { return registry_.find(url); }
  const WorkerRegistry& workers() const { return registry_; }
  // GET /workers (breaker states as of `now`) and GET /get_loads.
  nlohmann::json workers_json(TimePoint now);
  nlohmann::json loads_json() const { return registry_.loads_json(); }

  // One active health check result (GET --health-check-endpoint within the timeout).
  void record_health_check(Worker& worker, bool passed);
  // A worker's /get_load answer (parse_worker_load), nullopt when the fetch failed.
  void set_reported_load(Worker& worker, std::optional<int64_t> load) { worker.set_reported_load(load); }

  // Routing ------------------------------------------------------------------------------
  // Whether any policy in use reads the request text (only cache_aware does).
  bool needs_request_text() const;

  struct Pick {
    std::shared_ptr<Worker> worker;
    LoadGuard load;  // counts the request in flight on `worker` until dropped
    Decision decision = Decision::kPlain;
  };
  struct PdPick {
    Pick prefill;
    Pick decode;
  };
  // Regular mode: one worker among the available regular workers.
  // PD mode: a prefill and a decode worker, each by its own policy (both see `text`, as in
  // SGLang). Errors: unavailable (no worker of a type, or none available: 503).
  Result<Pick> pick_worker(std::string_view text, TimePoint now);
  Result<PdPick> pick_pair(std::string_view text, TimePoint now);

  // How a request to `worker` ended: feeds its circuit breaker (success = 2xx or 4xx, as
  // SGLang), and a refused connection marks it unhealthy at once (pdctl's rule: nothing
  // listens there, so waiting for --cb-failure-threshold failures or the next health checks
  // would only send more requests to a dead address; health checks bring it back after
  // --health-success-threshold passes). Resets and timeouts only count for the breaker.
  // Ignored for a worker removed meanwhile.
  void record_outcome(Worker& worker, const AttemptResult& result, TimePoint now);
  // SGLang's rule for PD: both workers' breakers record the final response's outcome (no
  // health marking: the pair's result does not say which worker refused).
  void record_pair_outcome(PdPick& pair, const AttemptResult& final_result, TimePoint now);

  // Upkeep: cache_aware eviction when --eviction-interval-secs have passed.
  void maintain(TimePoint now);

  // Prometheus text for GET /metrics, worker and admission gauges refreshed first.
  std::string metrics_text(TimePoint now);

  AdmissionController& admission() { return admission_; }
  RetryPolicy& retry() { return retry_; }
  RouterMetrics& metrics() { return metrics_; }
  // For bootstrap rooms (make_pd_body).
  Rng& rng() { return rng_; }
  // The policy that picks workers of `type` (regular, prefill or decode).
  Policy& policy(WorkerType type);

 private:
  RouterCore(RouterCoreConfig config, uint64_t seed, std::shared_ptr<prometheus::Registry> registry);
  Result<Pick> pick(WorkerType type, std::string_view text, TimePoint now);
  void note_transition(const Worker& w, std::optional<CircuitTransition> t);
  void feed_breaker(Worker& worker, bool ok, TimePoint now);

  RouterCoreConfig config_;
  WorkerRegistry registry_;
  RouterMetrics metrics_;
  AdmissionController admission_;
  RetryPolicy retry_;
  Rng rng_;
  // Indexed by WorkerType; regular mode fills kRegular, PD mode kPrefill and kDecode.
  std::array<std::unique_ptr<Policy>, 3> policies_;
};

}  // namespace pdctl::router

#pragma once
// The router's Prometheus metrics, named as SGLang's router names them
// (sgl-router/src/metrics.rs: sgl_router_*), with small methods for the HTTP layer and the
// router core. Worker gauges (load, health, breaker state, tree size) are set from the
// worker state just before a scrape (RouterCore::metrics_text), so they cannot drift.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "roles/router/circuit_breaker.h"

namespace pdctl::router {

class RouterMetrics {
 public:
  // Families are registered in `registry` (a new one when null), which may hold others.
  explicit RouterMetrics(std::shared_ptr<prometheus::Registry> registry = nullptr);
  RouterMetrics(const RouterMetrics&) = delete;
  RouterMetrics& operator=(const RouterMetrics&) = delete;

  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }
  // Everything in the registry, in Prometheus text format.
  std::string serialize() const;

  // Client requests (route: "/generate", "/v1/chat/completions", ...).
  void record_request(std::string_view route);
  void record_request_duration(std::string_view route, std::chrono::duration<double> d);
  void record_request_error(std::string_view route, std::string_view error_type);
  void record_retry(std::string_view route);
  void record_retry_backoff(std::chrono::milliseconds delay, uint32_t attempt);
  void record_retries_exhausted(std::string_view route);

  // PD dispatch.
  void record_pd_request(std::string_view route);
  void record_pd_request_duration(std::string_view route, std::chrono::duration<double> d);
  void record_pd_prefill_request(std::string_view worker);
  void record_pd_decode_request(std::string_view worker);
  void record_pd_error(std::string_view error_type);
  void record_pd_prefill_error(std::string_view worker);
  void record_pd_decode_error(std::string_view worker);
  void record_pd_stream_error(std::string_view worker);

  // Workers.
  void set_active_workers(size_t n);
  void set_worker_health(std::string_view worker, bool healthy);
  void set_worker_load(std::string_view worker, int64_t load);
  void set_cb_state(std::string_view worker, CircuitState s);
  void record_cb_transition(std::string_view worker, CircuitState from, CircuitState to);
  void record_cb_outcome(std::string_view worker, bool success);
  void record_processed_request(std::string_view worker);
  void set_tree_size(std::string_view worker, size_t chars);
  // Drops the gauges of a removed worker (its counters stay: they are totals).
  void forget_worker(std::string_view worker);

  // Policies.
  void record_policy_decision(std::string_view policy, std::string_view worker);
  void record_cache_hit();
  void record_cache_miss();
  void record_load_balancing_event(int64_t max_load, int64_t min_load);

  // Admission (pdctl's additions, same naming).
  void set_admission(int64_t in_flight, size_t queued);
  void record_admission_rejected(std::string_view reason);

 private:
  // The series each request touches, by their label values: a Family::Add builds a label
  // map and takes the family's lock on every call, which shows at tens of thousands of
  // requests a second. The series stay valid: none of these is ever removed.
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  template <class T>
  using SeriesCache = std::unordered_map<std::string, T*, StringHash, std::equal_to<>>;
  template <class T, class MakeFn>
  static T& cached(SeriesCache<T>& cache, std::string_view key, MakeFn make);

  SeriesCache<prometheus::Counter> requests_by_route_;
  SeriesCache<prometheus::Histogram> duration_by_route_;
  SeriesCache<prometheus::Counter> processed_by_worker_;
  std::unordered_map<std::string, SeriesCache<prometheus::Counter>, StringHash, std::equal_to<>>
      decisions_by_policy_worker_;
  SeriesCache<prometheus::Counter> cb_successes_by_worker_;
  SeriesCache<prometheus::Counter> cb_failures_by_worker_;

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& request_duration_;
  prometheus::Family<prometheus::Counter>& request_errors_;
  prometheus::Family<prometheus::Counter>& retries_;
  prometheus::Family<prometheus::Histogram>& retry_backoff_;
  prometheus::Family<prometheus::Counter>& retries_exhausted_;
  prometheus::Family<prometheus::Counter>& pd_requests_;
  prometheus::Family<prometheus::Histogram>& pd_request_duration_;
  prometheus::Family<prometheus::Counter>& pd_prefill_requests_;
  prometheus::Family<prometheus::Counter>& pd_decode_requests_;
  prometheus::Family<prometheus::Counter>& pd_errors_;
  prometheus::Family<prometheus::Counter>& pd_prefill_errors_;
  prometheus::Family<prometheus::Counter>& pd_decode_errors_;
  prometheus::Family<prometheus::Counter>& pd_stream_errors_;
  prometheus::Family<prometheus::Gauge>& active_workers_;
  prometheus::Family<prometheus::Gauge>& worker_health_;
  prometheus::Family<prometheus::Gauge>& worker_load_;
  prometheus::Family<prometheus::Gauge>& cb_state_;
  prometheus::Family<prometheus::Counter>& cb_transitions_;
  prometheus::Family<prometheus::Counter>& cb_outcomes_;
  prometheus::Family<prometheus::Counter>& processed_requests_;
  prometheus::Family<prometheus::Gauge>& tree_size_;
  prometheus::Family<prometheus::Counter>& policy_decisions_;
  prometheus::Family<prometheus::Counter>& cache_hits_;
  prometheus::Family<prometheus::Counter>& cache_misses_;
  prometheus::Family<prometheus::Counter>& load_balancing_events_;
  prometheus::Family<prometheus::Gauge>& max_load_;
  prometheus::Family<prometheus::Gauge>& min_load_;
  prometheus::Family<prometheus::Gauge>& concurrent_requests_;
  prometheus::Family<prometheus::Gauge>& queued_requests_;
  prometheus::Family<prometheus::Counter>& admission_rejected_;
};

}  // namespace pdctl::router

#include "roles/router/router_metrics.h"

#include <prometheus/text_serializer.h>

namespace pdctl::router {
namespace {

using prometheus::Labels;

// SGLang's buckets for every *_duration_seconds histogram (metrics.rs, start_prometheus).
const prometheus::Histogram::BucketBoundaries kDurationBuckets = {
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 45.0,
    60.0, 90.0, 120.0, 180.0, 240.0};

prometheus::Family<prometheus::Counter>& counter(prometheus::Registry& r, const char* name,
                                                 const char* help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r);
}
prometheus::Family<prometheus::Gauge>& gauge(prometheus::Registry& r, const char* name,
                                             const char* help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r);
}
prometheus::Family<prometheus::Histogram>& histogram(prometheus::Registry& r, const char* name,
                                                     const char* help) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(r);
}

std::string s(std::string_view v) { return std::string(v); }

template <class T>
void drop(prometheus::Family<T>& f, const Labels& l) {
  if (f.Has(l)) f.Remove(&f.Add(l));
}

std::shared_ptr<prometheus::Registry> or_new(std::shared_ptr<prometheus::Registry> r) {
  return r ? std::move(r) : std::make_shared<prometheus::Registry>();
}

}  // namespace

RouterMetrics::RouterMetrics(std::shared_ptr<prometheus::Registry> registry)
    : registry_(or_new(std::move(registry))),
      requests_(counter(*registry_, "sgl_router_requests_total", "Total number of requests by route")),
      request_duration_(histogram(*registry_, "sgl_router_request_duration_seconds",
                                  "Request duration in seconds by route")),
      request_errors_(counter(*registry_, "sgl_router_request_errors_total",
                              "Total number of request errors by route and error type")),
      retries_(counter(*registry_, "sgl_router_retries_total", "Total number of request retries by route")),
      retry_backoff_(histogram(*registry_, "sgl_router_retry_backoff_duration_seconds",
                               "Backoff duration in seconds by attempt index")),
      retries_exhausted_(counter(*registry_, "sgl_router_retries_exhausted_total",
                                 "Total number of requests that exhausted retries by route")),
      pd_requests_(counter(*registry_, "sgl_router_pd_requests_total", "Total PD requests by route")),
      pd_request_duration_(histogram(*registry_, "sgl_router_pd_request_duration_seconds",
                                     "PD request duration by route")),
      pd_prefill_requests_(counter(*registry_, "sgl_router_pd_prefill_requests_total",
                                   "Total prefill requests per worker")),
      pd_decode_requests_(counter(*registry_, "sgl_router_pd_decode_requests_total",
                                  "Total decode requests per worker")),
      pd_errors_(counter(*registry_, "sgl_router_pd_errors_total", "Total PD errors by error type")),
      pd_prefill_errors_(counter(*registry_, "sgl_router_pd_prefill_errors_total", "Total prefill server errors")),
      pd_decode_errors_(counter(*registry_, "sgl_router_pd_decode_errors_total", "Total decode server errors")),
      pd_stream_errors_(counter(*registry_, "sgl_router_pd_stream_errors_total",
                                "Total streaming errors per worker")),
      active_workers_(gauge(*registry_, "sgl_router_active_workers", "Number of currently active workers")),
      worker_health_(gauge(*registry_, "sgl_router_worker_health",
                           "Worker health status (1=healthy, 0=unhealthy)")),
      worker_load_(gauge(*registry_, "sgl_router_worker_load", "Current load on each worker")),
      cb_state_(gauge(*registry_, "sgl_router_cb_state",
                      "Circuit breaker state per worker (0=closed, 1=open, 2=half_open)")),
      cb_transitions_(counter(*registry_, "sgl_router_cb_state_transitions_total",
                              "Total number of circuit breaker state transitions by worker")),
      cb_outcomes_(counter(*registry_, "sgl_router_cb_outcomes_total",
                           "Total number of circuit breaker outcomes by worker and outcome type (success/failure)")),
      processed_requests_(counter(*registry_, "sgl_router_processed_requests_total",
                                  "Total requests processed by each worker")),
      tree_size_(gauge(*registry_, "sgl_router_tree_size", "Current tree size for cache-aware routing")),
      policy_decisions_(counter(*registry_, "sgl_router_policy_decisions_total",
                                "Total routing policy decisions by policy and worker")),
      cache_hits_(counter(*registry_, "sgl_router_cache_hits_total", "Total cache hits")),
      cache_misses_(counter(*registry_, "sgl_router_cache_misses_total", "Total cache misses")),
      load_balancing_events_(counter(*registry_, "sgl_router_load_balancing_events_total",
                                     "Total load balancing trigger events")),
      max_load_(gauge(*registry_, "sgl_router_max_load", "Maximum worker load")),
      min_load_(gauge(*registry_, "sgl_router_min_load", "Minimum worker load")),
      concurrent_requests_(gauge(*registry_, "sgl_router_concurrent_requests",
                                 "Requests admitted and in flight in the router")),
      queued_requests_(gauge(*registry_, "sgl_router_queued_requests",
                             "Requests waiting for an admission slot")),
      admission_rejected_(counter(*registry_, "sgl_router_admission_rejected_total",
                                  "Requests refused by admission control by reason (queue_full, queue_timeout)")) {
  // Unlabelled series exist from the start, so that a scrape shows zeros, not nothing.
  cache_hits_.Add({});
  cache_misses_.Add({});
  load_balancing_events_.Add({});
  active_workers_.Add({});
  concurrent_requests_.Add({});
  queued_requests_.Add({});
}

std::string RouterMetrics::serialize() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

template <class T, class MakeFn>
T& RouterMetrics::cached(SeriesCache<T>& cache, std::string_view key, MakeFn make) {
  auto it = cache.find(key);
  if (it != cache.end()) return *it->second;
  T& series = make();
  cache.emplace(std::string(key), &series);
  return series;
}

void RouterMetrics::record_request(std::string_view route) {
  cached(requests_by_route_, route, [&]() -> prometheus::Counter& { return requests_.Add({{"route", s(route)}}); })
      .Increment();
}
void RouterMetrics::record_request_duration(std::string_view route, std::chrono::duration<double> d) {
  cached(duration_by_route_, route,
         [&]() -> prometheus::Histogram& { return request_duration_.Add({{"route", s(route)}}, kDurationBuckets); })
      .Observe(d.count());
}
void RouterMetrics::record_request_error(std::string_view route, std::string_view error_type) {
  request_errors_.Add({{"route", s(route)}, {"error_type", s(error_type)}}).Increment();
}
void RouterMetrics::record_retry(std::string_view route) { retries_.Add({{"route", s(route)}}).Increment(); }
void RouterMetrics::record_retry_backoff(std::chrono::milliseconds delay, uint32_t attempt) {
  retry_backoff_.Add({{"attempt", std::to_string(attempt)}}, kDurationBuckets)
      .Observe(std::chrono::duration<double>(delay).count());
}
void RouterMetrics::record_retries_exhausted(std::string_view route) {
  retries_exhausted_.Add({{"route", s(route)}}).Increment();
}

void RouterMetrics::record_pd_request(std::string_view route) { pd_requests_.Add({{"route", s(route)}}).Increment(); }
void RouterMetrics::record_pd_request_duration(std::string_view route, std::chrono::duration<double> d) {
  pd_request_duration_.Add({{"route", s(route)}}, kDurationBuckets).Observe(d.count());
}
void RouterMetrics::record_pd_prefill_request(std::string_view w) { pd_prefill_requests_.Add({{"worker", s(w)}}).Increment(); }
void RouterMetrics::record_pd_decode_request(std::string_view w) { pd_decode_requests_.Add({{"worker", s(w)}}).Increment(); }
void RouterMetrics::record_pd_error(std::string_view t) { pd_errors_.Add({{"error_type", s(t)}}).Increment(); }
void RouterMetrics::record_pd_prefill_error(std::string_view w) { pd_prefill_errors_.Add({{"worker", s(w)}}).Increment(); }
void RouterMetrics::record_pd_decode_error(std::string_view w) { pd_decode_errors_.Add({{"worker", s(w)}}).Increment(); }
void RouterMetrics::record_pd_stream_error(std::string_view w) { pd_stream_errors_.Add({{"worker", s(w)}}).Increment(); }

void RouterMetrics::set_active_workers(size_t n) { active_workers_.Add({}).Set(static_cast<double>(n)); }
void RouterMetrics::set_worker_health(std::string_view w, bool healthy) {
  worker_health_.Add({{"worker", s(w)}}).Set(healthy ? 1.0 : 0.0);
}
void RouterMetrics::set_worker_load(std::string_view w, int64_t load) {
  worker_load_.Add({{"worker", s(w)}}).Set(static_cast<double>(load));
}
void RouterMetrics::set_cb_state(std::string_view w, CircuitState st) {
  cb_state_.Add({{"worker", s(w)}}).Set(static_cast<double>(static_cast<int>(st)));
}
void RouterMetrics::record_cb_transition(std::string_view w, CircuitState from, CircuitState to) {
  cb_transitions_.Add({{"worker", s(w)}, {"from", circuit_state_name(from)}, {"to", circuit_state_name(to)}})
      .Increment();
}
void RouterMetrics::record_cb_outcome(std::string_view w, bool success) {
  cached(success ? cb_successes_by_worker_ : cb_failures_by_worker_, w, [&]() -> prometheus::Counter& {
    return cb_outcomes_.Add({{"worker", s(w)}, {"outcome", success ? "success" : "failure"}});
  }).Increment();
}
void RouterMetrics::record_processed_request(std::string_view w) {
  cached(processed_by_worker_, w,
         [&]() -> prometheus::Counter& { return processed_requests_.Add({{"worker", s(w)}}); })
      .Increment();
}
void RouterMetrics::set_tree_size(std::string_view w, size_t chars) {
  tree_size_.Add({{"worker", s(w)}}).Set(static_cast<double>(chars));
}
void RouterMetrics::forget_worker(std::string_view w) {
  Labels l{{"worker", s(w)}};
  drop(worker_health_, l);
  drop(worker_load_, l);
  drop(cb_state_, l);
  drop(tree_size_, l);
}

void RouterMetrics::record_policy_decision(std::string_view policy, std::string_view w) {
  auto by_policy = decisions_by_policy_worker_.find(policy);
  if (by_policy == decisions_by_policy_worker_.end()) {
    by_policy = decisions_by_policy_worker_.emplace(std::string(policy), SeriesCache<prometheus::Counter>{}).first;
  }
  cached(by_policy->second, w, [&]() -> prometheus::Counter& {
    return policy_decisions_.Add({{"policy", s(policy)}, {"worker", s(w)}});
  }).Increment();
}
void RouterMetrics::record_cache_hit() { cache_hits_.Add({}).Increment(); }
void RouterMetrics::record_cache_miss() { cache_misses_.Add({}).Increment(); }
void RouterMetrics::record_load_balancing_event(int64_t max_load, int64_t min_load) {
  load_balancing_events_.Add({}).Increment();
  max_load_.Add({}).Set(static_cast<double>(max_load));
  min_load_.Add({}).Set(static_cast<double>(min_load));
}

void RouterMetrics::set_admission(int64_t in_flight, size_t queued) {
  concurrent_requests_.Add({}).Set(static_cast<double>(in_flight));
  queued_requests_.Add({}).Set(static_cast<double>(queued));
}
void RouterMetrics::record_admission_rejected(std::string_view reason) {
  admission_rejected_.Add({{"reason", s(reason)}}).Increment();
}

}  // namespace pdctl::router

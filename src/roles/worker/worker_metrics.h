#pragma once
// A worker's Prometheus metrics under SGLang's names (python/sglang/srt/metrics/collector.py:
// sglang:*), labelled with model_name, plus pdctl's engine-time counters. Request metrics
// are observed by the API layer as output arrives; the engine's gauges are read from
// EngineService::load() / counters() just before a scrape, so they cannot drift. The
// registry may be shared: the PD roles add their own families to it.
#include <cstdint>
#include <memory>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "engine/engine_service.h"

namespace pdctl::worker {

class WorkerMetrics {
 public:
  explicit WorkerMetrics(std::string model_name, std::shared_ptr<prometheus::Registry> registry = nullptr);
  WorkerMetrics(const WorkerMetrics&) = delete;
  WorkerMetrics& operator=(const WorkerMetrics&) = delete;

  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }
  const prometheus::Labels& labels() const { return labels_; }

  // One request item ended (SGLang counts each sample of n > 1 as a request).
  void observe_finished(int prompt_tokens, int generation_tokens, int cached_tokens, double e2e_seconds,
                        bool aborted);
  void observe_time_to_first_token(double seconds);
  // `interval` since the previous output of the request, which brought `new_tokens` tokens:
  // each counts interval / new_tokens, as SGLang's observe_inter_token_latency.
  void observe_inter_token(double interval, int new_tokens);

  // The engine's state: gauges, and the engine-time counters advanced to `c`.
  void set_engine_state(const engine::EngineLoad& load, const engine::EngineCounters& c);

  // Everything in the registry, in Prometheus text format.
  std::string serialize() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Labels labels_;
  prometheus::Counter& prompt_tokens_;
  prometheus::Counter& generation_tokens_;
  prometheus::Counter& cached_tokens_;
  prometheus::Counter& requests_;
  prometheus::Counter& aborted_requests_;
  prometheus::Histogram& ttft_;
  prometheus::Histogram& inter_token_;
  prometheus::Histogram& e2e_;
  prometheus::Gauge& running_;
  prometheus::Gauge& queued_;
  prometheus::Gauge& used_tokens_;
  prometheus::Gauge& token_usage_;
  prometheus::Gauge& max_total_tokens_;
  prometheus::Gauge& cache_hit_rate_;
  prometheus::Counter& forward_seconds_;
  prometheus::Counter& forward_steps_;
  double seen_forward_seconds_ = 0;  // what forward_seconds_ already holds
  uint64_t seen_forward_steps_ = 0;
};

}  // namespace pdctl::worker

#include "roles/worker/worker_metrics.h"

#include <prometheus/text_serializer.h>

namespace pdctl::worker {

namespace {

using prometheus::Histogram;

// SGLang's default buckets (TokenizerMetricsCollector).
const Histogram::BucketBoundaries& ttft_buckets() {
  static const Histogram::BucketBoundaries b = {0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400};
  return b;
}
const Histogram::BucketBoundaries& e2e_buckets() {
  static const Histogram::BucketBoundaries b = {0.1, 0.2, 0.4, 0.6, 0.8, 1,   2,   4,    6,    8,    10,
                                                20,  40,  60,  80,  100, 200, 400, 600, 1200, 1800, 2400};
  return b;
}
const Histogram::BucketBoundaries& itl_buckets() {
  static const Histogram::BucketBoundaries b = {0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.025,
                                                0.030, 0.035, 0.040, 0.060, 0.080, 0.100, 0.200, 0.400,
                                                0.600, 0.800, 1.000, 2.000, 4.000, 6.000, 8.000};
  return b;
}

prometheus::Counter& counter(prometheus::Registry& r, const char* name, const char* help,
                             const prometheus::Labels& l) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r).Add(l);
}
prometheus::Gauge& gauge(prometheus::Registry& r, const char* name, const char* help, const prometheus::Labels& l) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r).Add(l);
}
prometheus::Histogram& histogram(prometheus::Registry& r, const char* name, const char* help,
                                 const prometheus::Labels& l, const Histogram::BucketBoundaries& b) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(r).Add(l, b);
}

std::shared_ptr<prometheus::Registry> or_new(std::shared_ptr<prometheus::Registry> r) {
  return r ? std::move(r) : std::make_shared<prometheus::Registry>();
}

}  // namespace

WorkerMetrics::WorkerMetrics(std::string model_name, std::shared_ptr<prometheus::Registry> registry)
    : registry_(or_new(std::move(registry))),
      labels_{{"model_name", std::move(model_name)}},
      prompt_tokens_(counter(*registry_, "sglang:prompt_tokens_total", "Number of prefill tokens processed.", labels_)),
      generation_tokens_(counter(*registry_, "sglang:generation_tokens_total", "Number of generation tokens processed.",
                                 labels_)),
      cached_tokens_(counter(*registry_, "sglang:cached_tokens_total", "Number of cached prompt tokens.", labels_)),
      requests_(counter(*registry_, "sglang:num_requests_total", "Number of requests processed.", labels_)),
      aborted_requests_(counter(*registry_, "sglang:num_aborted_requests_total", "Number of requests aborted.", labels_)),
      ttft_(histogram(*registry_, "sglang:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                      labels_, ttft_buckets())),
      inter_token_(histogram(*registry_, "sglang:inter_token_latency_seconds",
                             "Histogram of inter-token latency in seconds.", labels_, itl_buckets())),
      e2e_(histogram(*registry_, "sglang:e2e_request_latency_seconds",
                     "Histogram of End-to-end request latency in seconds", labels_, e2e_buckets())),
      running_(gauge(*registry_, "sglang:num_running_reqs", "The number of running requests.", labels_)),
      queued_(gauge(*registry_, "sglang:num_queue_reqs", "The number of requests in the waiting queue.", labels_)),
      used_tokens_(gauge(*registry_, "sglang:num_used_tokens", "The number of used tokens.", labels_)),
      token_usage_(gauge(*registry_, "sglang:token_usage", "The token usage.", labels_)),
      max_total_tokens_(gauge(*registry_, "sglang:max_total_num_tokens",
                              "Maximum total number of tokens in the KV cache pool.", labels_)),
      cache_hit_rate_(gauge(*registry_, "sglang:cache_hit_rate", "The prefix cache hit rate.", labels_)),
      forward_seconds_(counter(*registry_, "pdctl:engine_forward_seconds_total",
                               "Seconds the engine spent in forward passes (for overhead measurements).", labels_)),
      forward_steps_(counter(*registry_, "pdctl:engine_forward_steps_total", "Forward passes the engine ran.",
                             labels_)) {}

void WorkerMetrics::observe_finished(int prompt_tokens, int generation_tokens, int cached_tokens, double e2e_seconds,
                                     bool aborted) {
  prompt_tokens_.Increment(prompt_tokens);
  generation_tokens_.Increment(generation_tokens);
  if (cached_tokens > 0) cached_tokens_.Increment(cached_tokens);
  requests_.Increment();
  if (aborted) aborted_requests_.Increment();
  e2e_.Observe(e2e_seconds);
}

void WorkerMetrics::observe_time_to_first_token(double seconds) { ttft_.Observe(seconds); }

void WorkerMetrics::observe_inter_token(double interval, int new_tokens) {
  if (new_tokens <= 0) return;
  const double each = interval / new_tokens;
  for (int i = 0; i < new_tokens; ++i) inter_token_.Observe(each);
}

void WorkerMetrics::set_engine_state(const engine::EngineLoad& load, const engine::EngineCounters& c) {
  running_.Set(load.running_requests);
  queued_.Set(load.queued_requests);
  used_tokens_.Set(static_cast<double>(load.tokens_in_use));
  token_usage_.Set(load.total_tokens > 0 ? static_cast<double>(load.tokens_in_use) / load.total_tokens : 0.0);
  max_total_tokens_.Set(static_cast<double>(load.total_tokens));
  cache_hit_rate_.Set(c.cache_query_tokens > 0 ? static_cast<double>(c.cache_hit_tokens) / c.cache_query_tokens : 0.0);
  if (c.forward_seconds > seen_forward_seconds_) {
    forward_seconds_.Increment(c.forward_seconds - seen_forward_seconds_);
    seen_forward_seconds_ = c.forward_seconds;
  }
  if (c.forward_steps > seen_forward_steps_) {
    forward_steps_.Increment(static_cast<double>(c.forward_steps - seen_forward_steps_));
    seen_forward_steps_ = c.forward_steps;
  }
}

std::string WorkerMetrics::serialize() const { return prometheus::TextSerializer().Serialize(registry_->Collect()); }

}  // namespace pdctl::worker

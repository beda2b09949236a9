#include "roles/pd/pd_metrics.h"

namespace pdctl::pd {

namespace {

prometheus::Counter& counter(prometheus::Registry& r, const char* name, const char* help,
                             const prometheus::Labels& l) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r).Add(l);
}
prometheus::Gauge& gauge(prometheus::Registry& r, const char* name, const char* help, const prometheus::Labels& l) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r).Add(l);
}

}  // namespace

PdMetrics::PdMetrics(prometheus::Registry& r, const prometheus::Labels& l)
    : bootstrap_failed_(counter(r, "sglang:num_bootstrap_failed_reqs_total",
                                "Number of requests whose KV bootstrap failed.", l)),
      transfer_failed_(counter(r, "sglang:num_transfer_failed_reqs_total",
                               "Number of requests whose KV transfer failed.", l)),
      bytes_(counter(r, "pdctl:kv_transfer_bytes_total", "KV bytes moved by completed transfers.", l)),
      speed_(gauge(r, "sglang:kv_transfer_speed_gb_s", "KV transfer speed of the last request in GB/s.", l)),
      latency_(prometheus::BuildHistogram()
                   .Name("sglang:kv_transfer_latency_ms")
                   .Help("Histogram of a request's KV transfer latency in milliseconds.")
                   .Register(r)
                   .Add(l, prometheus::Histogram::BucketBoundaries{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250,
                                                                    500, 1000, 2500, 5000, 10000})),
      bootstrap_queue_(gauge(r, "sglang:num_bootstrap_queue_reqs",
                             "Requests waiting for their bootstrap (prefill: decode's registration; decode: pages "
                             "and registration).",
                             l)),
      transfer_queue_(gauge(r, "sglang:num_transfer_queue_reqs",
                            "Requests whose KV is being transferred.", l)),
      prompt_done_(gauge(r, "pdctl:pd_last_prompt_computed_seconds",
                         "Prefill: steady-clock time when the last prompt finished computing.", l)),
      kv_ready_(gauge(r, "pdctl:pd_last_kv_ready_seconds",
                      "Decode: steady-clock time when the last request's KV notice arrived.", l)) {}

void PdMetrics::transferred(uint64_t bytes, double seconds) {
  bytes_.Increment(static_cast<double>(bytes));
  latency_.Observe(seconds * 1e3);
  if (seconds > 0) speed_.Set(static_cast<double>(bytes) / seconds * 1e-9);
}

}  // namespace pdctl::pd

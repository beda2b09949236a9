#pragma once
// The PD roles' Prometheus metrics, under SGLang's names (sglang:num_bootstrap_failed_reqs_total,
// ...), added to the worker's registry. Thread-safe (prometheus-cpp's metrics are atomic).
#include <cstdint>
#include <memory>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace pdctl::pd {

class PdMetrics {
 public:
  PdMetrics(prometheus::Registry& registry, const prometheus::Labels& labels);

  void bootstrap_failed() { bootstrap_failed_.Increment(); }
  void transfer_failed() { transfer_failed_.Increment(); }
  // One room's KV moved: `bytes` in `seconds` (from its first put to its notice's flush).
  void transferred(uint64_t bytes, double seconds);
  // Queue lengths. Prefill: rooms waiting for decode's registration, rooms transferring.
  // Decode: requests waiting for pages (the engine's queue), requests waiting for their KV.
  // Steady-clock (CLOCK_MONOTONIC, comparable between processes of one host) seconds of
  // the last prompt computed (prefill) and of the last KV arrival (decode): their
  // difference is the hand-off time of a request (scripts/bench-pd-transfer.py).
  void prompt_computed(double t) { prompt_done_.Set(t); }
  void kv_ready(double t) { kv_ready_.Set(t); }
  void set_queues(int bootstrap, int transfer) {
    bootstrap_queue_.Set(bootstrap);
    transfer_queue_.Set(transfer);
  }

 private:
  prometheus::Counter& bootstrap_failed_;
  prometheus::Counter& transfer_failed_;
  prometheus::Counter& bytes_;
  prometheus::Gauge& speed_;
  prometheus::Histogram& latency_;
  prometheus::Gauge& bootstrap_queue_;
  prometheus::Gauge& transfer_queue_;
  prometheus::Gauge& prompt_done_;
  prometheus::Gauge& kv_ready_;
};

}  // namespace pdctl::pd

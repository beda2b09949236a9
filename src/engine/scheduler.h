#pragma once
// The scheduler: the state of every live request on the engine thread and one step of
// the loop (EngineService owns the thread and calls it). A step:
//   1. makes room for the running decodes' next tokens (evicting cached prefixes, then
//      preempting the most recently admitted request, which goes back to the front of
//      the queue and later recomputes its prompt and output so far);
//   2. admits queued requests first come, first served while their prompts fit (after
//      the longest cached prefix) with room kept for the running requests' decodes;
//   3. runs one forward() over a ragged batch: every decode's newest token, then prompt
//      chunks of the requests still in prefill (chunked_prefill_size each, within
//      max_prefill_tokens per step);
//   4. samples each sequence that finished its prompt or decoded, detokenizes, checks
//      stop conditions, sends chunks to the sinks, and releases finished requests' pages
//      (their full pages go to the prefix cache).
// Not thread-safe: the engine thread only.
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/engine_service.h"
#include "engine/model_runner.h"
#include "engine/radix_cache.h"
#include "engine/sampler.h"
#include "engine/scheduler_batch.h"
#include "engine/scheduler_policy.h"
#include "engine/scheduler_request.h"

namespace pdctl::engine {

// Gauges and counters kept current for other threads: relaxed atomics, each value exact
// on its own (a set of them is not one instant).
struct SchedulerMetrics {
  std::atomic<int> running{0};
  std::atomic<int> queued{0};  // submit() counts a request before the engine thread sees it
  std::atomic<int> awaiting_kv{0};
  std::atomic<int64_t> tokens_in_use{0};
  std::atomic<int64_t> cached_tokens{0};
  std::atomic<uint64_t> requests_finished{0};
  std::atomic<uint64_t> requests_aborted{0};
  std::atomic<uint64_t> requests_retracted{0};
  std::atomic<uint64_t> prompt_tokens{0};
  std::atomic<uint64_t> generated_tokens{0};
  std::atomic<uint64_t> cache_hit_tokens{0};
  std::atomic<uint64_t> cache_query_tokens{0};
  std::atomic<uint64_t> forward_steps{0};
  std::atomic<uint64_t> forward_ns{0};
};

class Scheduler {
 public:
  // Called with a request's rid just before its final chunk is sent (the service forgets
  // the rid then, so that a client may reuse it as soon as it sees the end).
  using RetireFn = std::function<void(const std::string& rid)>;
  // Called after layer `layer` of every step's forward() (PD prefill: which requests and
  // pages the layer's K/V went into). Not used by a colocated worker.
  using LayerHook = std::function<void(const StepBatch& batch, int layer)>;

  Scheduler(ModelRunner& runner, const Tokenizer* tokenizer, const SchedulerOptions& options, SchedulerMetrics& metrics,
            RetireFn on_retire, const policy::Tuning& tuning = {});
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a validated request at the back.
  void add(std::unique_ptr<Request> r);
  // Ends a live request with an abort chunk and frees its pages; unknown rids are ignored.
  void abort(const std::string& rid, const std::string& reason, Errc code);
  void abort_all(const std::string& reason, Errc code);
  // Empties the prefix cache; kUnavailable while any request is live.
  Status flush_cache();
  // One step of the loop. False when it could do nothing: no request can make progress
  // until a command arrives (so the engine thread may sleep).
  bool step();
  void set_layer_hook(LayerHook hook) { layer_hook_ = std::move(hook); }
  // PD (see KvHandoffHooks in engine_service.h).
  void set_kv_hooks(KvHandoffHooks hooks);
  void kv_arrived(const std::string& rid, int32_t first_token, float logprob);
  void release_pages(std::span<const int32_t> pages);

  int max_running_requests() const { return max_running_; }
  size_t live_requests() const { return requests_.size(); }

 private:
  void make_room_for_decodes();
  void admit();
  void build_batch();
  void process_batch();
  void sample(Request& r, std::span<const float> logits);
  // A new output token, sampled here or (PD decode, later) sampled by the prefill worker:
  // detokenize, check stop conditions, send the chunk or finish.
  void append_token(Request& r, int32_t token, float logprob, std::vector<TokenLogprob> top);
  void finish(Request& r, FinishInfo info, bool cache);
  void retract(Request& r);
  bool allocate(int n, std::vector<int32_t>& pages);
  int available_pages() const;
  int prefix_limit(const Request& r) const;
  void cache_prefix(Request& r, int32_t chunk_start);
  void release_kv(Request& r, bool cache);
  void emit(Request& r);
  void publish();

  ModelRunner& runner_;
  kv::KvPool& pool_;
  const Tokenizer* tokenizer_;
  SchedulerOptions options_;
  SchedulerMetrics& metrics_;
  RetireFn on_retire_;
  LayerHook layer_hook_;
  int max_running_;
  std::vector<int32_t> eos_ids_;
  std::unique_ptr<RadixCache> cache_;  // null with --disable-radix-cache

  std::unordered_map<std::string, std::unique_ptr<Request>> requests_;  // every live request
  std::deque<Request*> waiting_;                                        // FCFS
  std::vector<Request*> running_;                                       // in admission order
  std::vector<Request*> awaiting_;                                      // kReceive: pages, no KV yet
  KvHandoffHooks kv_hooks_;
  uint64_t admit_counter_ = 0;
  policy::Tuning tuning_;
  policy::NewTokenRatio ratio_;

  StepBatch batch_;
  ForwardOutput out_;
  Sampler sampler_;
  LogprobCalculator logprobs_;
};

}  // namespace pdctl::engine

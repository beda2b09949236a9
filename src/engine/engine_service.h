#pragma once
// The engine as a service for the roles: it owns the engine thread, which runs the
// scheduler loop (admission, continuous batching with chunked prefill, the prefix cache,
// the forward pass, sampling, detokenization and stop conditions). Other threads talk to
// it only through this interface: submit / abort / flush are thread-safe and never wait
// for a step; results come back through each request's OutputSink, called on the engine
// thread (the sink hands them to its own thread, e.g. with net::EventLoop::post).
//
// Interface first (written by the lead) so that the scheduler and the HTTP layer can be
// built in parallel; the implementation lives in engine_service.cpp and scheduler*.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "common/status.h"
#include "engine/model_config.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"

namespace pdctl::engine {

class ModelRunner;

// One request, as the engine sees it: token ids in, token ids (and text) out.
struct GenerateRequest {
  std::string rid;                       // the client's id (SGLang `rid`), unique among live requests
  std::vector<int32_t> input_ids;        // the whole prompt, BOS included when wanted
  SamplingParams sampling;               // validated by submit()
  std::vector<std::string> stop;         // stop strings (need a tokenizer)
  bool skip_special_tokens = true;       // for the text
  bool no_stop_trim = false;             // keep the matched stop string / stop token text
  bool detokenize = true;                // false: no text at all (--skip-tokenizer-init)
  int logprob_start_len = -1;            // >= 0: also the logprobs of prompt tokens from here
  bool stream = false;                   // informational: the engine always emits deltas
  double arrival_time = 0;               // steady-clock seconds when the HTTP layer got it
  // PD disaggregation (see KvHandoffHooks): kSend on a prefill worker, kReceive on decode.
  enum class KvHandoff : uint8_t { kNone, kSend, kReceive };
  KvHandoff kv_handoff = KvHandoff::kNone;
};

struct FinishInfo {
  enum class Type { kStop, kLength, kAbort };
  Type type = Type::kStop;
  // What stopped it: a stop token id, a stop string, or nothing (length, EOS-free abort).
  std::variant<std::monostate, int32_t, std::string> matched;
  std::string message;                   // for kAbort: why (client gone, timeout, error, ...)
  Errc abort_code = Errc::kCancelled;    // for kAbort: maps to the HTTP status when nothing was sent
};

// The logprob of one token, with the N most likely alternatives when asked for.
struct TokenLogprobInfo {
  int32_t token = 0;
  float logprob = 0;
  std::vector<TokenLogprob> top;         // most likely first
};

// What one request produced since its previous chunk. Chunks of a request arrive in
// order; exactly one chunk has `finished` set and it is the last one. A request that
// submit() accepted always gets that final chunk (also on abort and shutdown).
struct OutputChunk {
  std::vector<int32_t> token_ids;        // new output tokens
  std::string text;                      // new text: whole UTF-8 characters; stop strings removed
                                         // (unless no_stop_trim); held back while it could still
                                         // become a stop string
  std::vector<TokenLogprobInfo> logprobs;          // per new token, when sampling.return_logprob
  std::vector<TokenLogprobInfo> input_logprobs;    // first chunk only, when logprob_start_len >= 0
                                                   // (the first prompt position has no logprob:
                                                   // logprob 0 as SGLang reports null)
  int prompt_tokens = 0;
  int cached_tokens = 0;                 // prompt tokens served from the prefix cache
  int completion_tokens = 0;             // cumulative
  bool finished = false;
  FinishInfo finish;                     // valid when finished
  // Final chunk of a KvHandoff::kSend request: its page table, each page with one extra
  // reference that the receiver of the chunk owns and returns with release_pages() once
  // no transfer reads the pages any more.
  std::vector<int32_t> held_pages;
};

using OutputSink = std::function<void(OutputChunk&&)>;

struct SchedulerOptions {
  int max_running_requests = 0;          // 0: derived from the pool: its page count (each running
                                         // request holds a page), at most 4096; memory-based
                                         // admission is what limits the batch in practice
  int max_queued_requests = 0;           // 0: unlimited; beyond it submit() is kResourceExhausted
  int chunked_prefill_size = 8192;       // -1 (or 0): no chunking
  int max_prefill_tokens = 16384;        // prompt tokens per step (>= 1; a prompt longer than
                                         // this runs alone in its step when not chunked)
  bool disable_radix_cache = false;
  uint64_t default_seed = 0;             // for requests without a seed
};

// A snapshot for /get_load, /metrics and the router's power_of_two.
struct EngineLoad {
  int running_requests = 0;
  int queued_requests = 0;
  int64_t tokens_in_use = 0;             // KV tokens held by live requests (whole pages: a
                                         // request's partly filled last page counts in full)
  int64_t total_tokens = 0;              // KV pool size in tokens
  int64_t cached_tokens = 0;             // KV tokens held only by the prefix cache (evictable)
  int transfer_requests = 0;             // KvHandoff::kReceive requests with pages, waiting for their KV
};

struct EngineCounters {                  // monotonic, for Prometheus counters
  uint64_t requests_finished = 0;
  uint64_t requests_aborted = 0;
  uint64_t requests_retracted = 0;       // preemptions for lack of KV memory (each recomputes)
  uint64_t prompt_tokens = 0;
  uint64_t generated_tokens = 0;
  uint64_t cache_hit_tokens = 0;         // prompt tokens served by the prefix cache
  uint64_t cache_query_tokens = 0;       // prompt tokens looked up
  uint64_t forward_steps = 0;
  double forward_seconds = 0;            // engine time, for overhead measurements
};

// PD disaggregation: how the engine hands a request's KV pages to the transfer side. The
// engine knows nothing of the network; both hooks run ON THE ENGINE THREAD and must only
// record and enqueue (the forward pass waits for them).
//  - Prefill (kSend): after each layer of a step, on_layer_stored names the request's pages
//    and how many of its tokens now have that layer's K/V; those blocks never change again
//    (the request's final chunk carries held_pages, so they outlive the request until
//    release_pages()).
//  - Decode (kReceive): once the request is admitted (the pool had room for its prompt),
//    on_kv_reserved hands over its page table, each page with one extra reference owned by
//    the transfer side. The request waits, out of the batch, until kv_arrived() says the
//    prompt's K/V is in those pages; it then joins the running batch with the first token
//    (sampled by prefill). The transfer side gives its references back with release_pages()
//    once no remote write can land in the pages any more (so an aborted request's pages
//    are not reused under a late write).
struct KvHandoffHooks {
  std::function<void(const std::string& rid, std::span<const int32_t> pages, int layer, int32_t tokens)>
      on_layer_stored;
  std::function<void(const std::string& rid, std::vector<int32_t> pages)> on_kv_reserved;
};

class EngineService {
 public:
  // Starts the engine thread. `tokenizer` may be empty (--skip-tokenizer-init): then stop
  // strings and text are unavailable and requests must not ask for them.
  static Result<std::unique_ptr<EngineService>> start(std::unique_ptr<ModelRunner> runner,
                                                      std::optional<Tokenizer> tokenizer,
                                                      const SchedulerOptions& options, KvHandoffHooks hooks = {});
  virtual ~EngineService() = default;

  // Thread-safe. Validates the request (ids in the vocabulary, prompt plus max_new_tokens
  // within the context, sampling ranges, stop strings need a tokenizer, duplicate live rid)
  // and queues it; the sink then receives its chunks on the engine thread. Errors:
  // kInvalidArgument / kOutOfRange (400; kOutOfRange also when the prompt plus
  // max_new_tokens could never fit in the KV pool), kAlreadyExists (a live request has this
  // rid: 400), kResourceExhausted (queue full: 429), kUnavailable (shutting down: 503).
  // On error the sink is never called.
  virtual Status submit(GenerateRequest request, OutputSink sink) = 0;

  // Thread-safe. Aborts a live request by rid: it leaves the batch and frees its pages
  // within one step; its sink gets a final chunk with FinishInfo::Type::kAbort. Unknown
  // rids are ignored (the request may have just finished).
  virtual void abort(const std::string& rid, std::string reason = "aborted") = 0;

  // Thread-safe. Empties the prefix cache (pages held only by it return to the pool); `done`
  // is called on the engine thread (at once on the caller's, with kUnavailable, once
  // shutdown() has begun). Fails (kUnavailable) while requests are live (running or
  // queued), as SGLang.
  virtual void flush_cache(std::function<void(Status)> done) = 0;

  // Thread-safe. PD decode: the KV of kReceive request `rid` has arrived; it joins the
  // batch starting from `first_token` (with its logprob). Unknown or not-waiting rids are
  // ignored (the request was aborted meanwhile).
  virtual void kv_arrived(const std::string& rid, int32_t first_token, float logprob) {
    (void)rid, (void)first_token, (void)logprob;
  }
  // Thread-safe. Drops one reference from each page (see KvHandoffHooks).
  virtual void release_pages(std::vector<int32_t> pages) { (void)pages; }

  virtual EngineLoad load() const = 0;          // thread-safe snapshot
  virtual EngineCounters counters() const = 0;  // thread-safe snapshot
  virtual const ModelConfig& model_config() const = 0;
  virtual int64_t context_length() const = 0;
  virtual const Tokenizer* tokenizer() const = 0;  // null with --skip-tokenizer-init

  // Stops admitting, aborts every request (their sinks get final abort chunks, with
  // abort_code kUnavailable), joins the engine thread. Idempotent; the destructor calls it.
  // From a sink (on the engine thread) it only asks the loop to stop after this step.
  virtual void shutdown() = 0;
};

}  // namespace pdctl::engine

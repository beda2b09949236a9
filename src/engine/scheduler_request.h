#pragma once
// One request as the scheduler keeps it on the engine thread (private to the scheduler).
//
// The request's token sequence is `fill`: the prompt, then every output token. `kv_len` of
// them have their K/V in the request's pages; a step forwards fill[kv_len, ...). A request
// is in decode when only its newest token is missing (one token per step), and in prefill
// otherwise -- its prompt, or after a preemption its prompt plus the output so far, which
// it recomputes (so the output continues exactly where it stopped).
#include <cstdint>
#include <string>
#include <vector>

#include "engine/engine_service.h"
#include "engine/radix_cache.h"
#include "engine/sampler.h"
#include "engine/scheduler_text.h"

namespace pdctl::engine {

struct Request {
  Request(GenerateRequest r, OutputSink s, const Tokenizer* tokenizer, uint64_t default_seed);

  GenerateRequest req;                   // input_ids moved into `fill`
  OutputSink sink;
  std::vector<int32_t> fill;             // prompt, then output tokens
  int prompt_len = 0;
  int kv_len = 0;                        // tokens of `fill` with K/V in `pages`
  std::vector<int32_t> pages;            // page table: one reference held on each
  RadixCache::Node* cache_node = nullptr;  // the cached prefix this request locks
  uint64_t admit_seq = 0;                // admission order while running; 0 while queued
  int cached_tokens = 0;                 // prompt tokens the prefix cache served (first admission)
  bool admitted_once = false;
  bool awaiting_kv = false;              // kReceive: has pages, waits for the remote KV
  bool input_logprobs_sent = false;
  std::vector<TokenLogprobInfo> input_logprobs;  // for prompt tokens from logprob_start_len
  SamplerState sampler;
  TextStream text;
  OutputChunk out;                       // what the next chunk carries

  int output_len() const { return static_cast<int>(fill.size()) - prompt_len; }
  int uncomputed() const { return static_cast<int>(fill.size()) - kv_len; }
  bool decoding() const { return uncomputed() == 1 && output_len() > 0; }
  bool wants_input_logprobs() const { return req.logprob_start_len >= 0 && !input_logprobs_sent; }
  // Output tokens it may still produce.
  int remaining_new_tokens() const { return req.sampling.max_new_tokens - output_len(); }
};

}  // namespace pdctl::engine

#pragma once
// One step's ragged batch and the per-token logprob arithmetic of its results.
#include <cstdint>
#include <span>
#include <vector>

#include "engine/llama_model.h"
#include "engine/scheduler_request.h"

namespace pdctl::engine {

// The sequences of one forward() call. The inputs are spans into each request's `fill`
// and page table: nothing is copied, and they stay valid until a request changes. The
// vectors are reused from step to step.
class StepBatch {
 public:
  struct Entry {
    Request* request = nullptr;
    int32_t start = 0;        // first position forwarded (the request's kv_len)
    int32_t num_tokens = 0;
    bool all_logits = false;  // rows for every token (input logprobs)
    bool prefill = false;     // a prompt (or recompute) chunk, not a decode token
  };

  void clear();
  void add(Request& r, int32_t num_tokens, bool all_logits, bool prefill);
  bool empty() const { return entries_.empty(); }
  size_t size() const { return entries_.size(); }
  const std::vector<Entry>& entries() const { return entries_; }
  std::span<const SequenceInput> inputs() const { return inputs_; }
  int64_t prefill_tokens() const { return prefill_tokens_; }
  int64_t decode_tokens() const { return decode_tokens_; }

 private:
  std::vector<Entry> entries_;
  std::vector<SequenceInput> inputs_;
  int64_t prefill_tokens_ = 0;
  int64_t decode_tokens_ = 0;
};

// Log-softmax of a logits row: the logprob of one token and the `top_n` most likely
// (ties to the lower id), for input logprobs (output logprobs come from the Sampler).
class LogprobCalculator {
 public:
  TokenLogprobInfo compute(std::span<const float> logits, int32_t token, int top_n);

 private:
  std::vector<float> logprobs_;
  std::vector<int32_t> order_;
};

// Fills the input logprobs that the rows of a prefill chunk give (entry i of
// r.input_logprobs is prompt token logprob_start_len + i; the row after token p predicts
// token p + 1).
void collect_input_logprobs(Request& r, const StepBatch::Entry& e, const ForwardOutput& out, size_t seq,
                            LogprobCalculator& calc);

}  // namespace pdctl::engine

#pragma once
// Per-request sampling: penalties, temperature, top-k / top-p / min-p, a seeded RNG, stop
// tokens, and logprobs. Stop strings need the tokenizer and live with the scheduler.
//
// Order, as in SGLang / vLLM: penalties -> (greedy: argmax) -> temperature -> top-k ->
// top-p -> min-p -> draw.
//  - repetition_penalty (HF): over prompt and output tokens, a positive logit is divided
//    by it and a negative one multiplied;
//  - frequency_penalty, presence_penalty (OpenAI): over output tokens, logit -= f * count
//    and -= p once the token has appeared.
//  - greedy when temperature == 0 or top_k == 1: argmax, ties to the lowest id.
// Logprobs (chosen and top-N) are log-softmax of the logits after penalties and
// temperature, before truncation (SGLang's default).
#include <cstdint>
#include <optional>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/status.h"

namespace pdctl::engine {

struct SamplingParams {
  float temperature = 1.0f;          // 0: greedy
  int top_k = -1;                    // <= 0: no limit
  float top_p = 1.0f;                // (0, 1]
  float min_p = 0.0f;                // [0, 1]
  float repetition_penalty = 1.0f;   // > 0; 1: off
  float frequency_penalty = 0.0f;    // [-2, 2]
  float presence_penalty = 0.0f;     // [-2, 2]
  std::optional<uint64_t> seed;      // unset: the caller's default seed
  std::vector<int32_t> stop_token_ids;
  int max_new_tokens = 128;
  bool ignore_eos = false;
  bool return_logprob = false;       // logprob of each chosen token
  int top_logprobs_num = 0;          // and the N most likely tokens' logprobs

  // Ranges as above; top_logprobs_num and stop ids within the vocabulary.
  Status validate(int64_t vocab_size) const;
  bool greedy() const { return temperature <= 0.0f || top_k == 1; }
};

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;
};

struct SampleResult {
  int32_t token = 0;
  float logprob = 0;                      // when return_logprob or top_logprobs_num
  std::vector<TokenLogprob> top_logprobs; // most likely first, ties to the lowest id
};

enum class FinishReason { kNone, kStopToken, kLength };

// What one request's sampling remembers: its RNG and the tokens the penalties look at.
class SamplerState {
 public:
  SamplerState(const SamplingParams& params, uint64_t default_seed, std::span<const int32_t> prompt);

  // Records a generated token (for penalties and output history).
  void accept(int32_t token);
  const std::vector<int32_t>& output() const { return output_; }
  // A uniform double in [0, 1) from the request's generator (53 random bits).
  double next_uniform();

 private:
  friend class Sampler;
  uint64_t state_[4];                          // xoshiro256**: the same stream everywhere
  std::unordered_map<int32_t, int32_t> output_counts_;
  std::vector<int32_t> prompt_tokens_;         // distinct, for the repetition penalty
  std::vector<int32_t> output_;
};

// Stateless apart from scratch buffers reused between calls (one per engine thread).
class Sampler {
 public:
  SampleResult sample(std::span<const float> logits, const SamplingParams& params, SamplerState& state);

 private:
  std::vector<float> work_;
  std::vector<int32_t> idx_;
};

// Whether generation stops after `token`, the `generated`-th output token.
FinishReason check_finish(int32_t token, int generated, const SamplingParams& params,
                          std::span<const int32_t> eos_token_ids);

}  // namespace pdctl::engine

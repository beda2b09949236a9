#pragma once
// The scheduler's policy decisions as small pure functions: how many requests may run,
// how much future decode memory to keep in reserve when admitting, and how many prompt
// tokens a request gets in a step.
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace pdctl::engine::policy {

// --max-running-requests 0: every running request holds at least one KV page, so the pool
// bounds the batch by itself; the cap keeps one step's batch bookkeeping bounded.
inline constexpr int kMaxDerivedRunningRequests = 4096;
inline int derived_max_running_requests(int configured, int num_pages) {
  if (configured > 0) return configured;
  return std::clamp(num_pages, 1, kMaxDerivedRunningRequests);
}

// Admission keeps room for the decode tokens that running requests are still expected to
// produce: (max_new_tokens - generated) * ratio each, as SGLang's new_token_ratio. The ratio
// starts at init_new_token_ratio and decays by new_token_ratio_decay per decode step to
// min_new_token_ratio (requests usually stop before max_new_tokens); a preemption shows that
// it was too optimistic and sets it back to retract_new_token_ratio. The defaults are
// SGLang's; tests set them to 0 to make admission reckless and preemption frequent.
struct Tuning {
  double init_new_token_ratio = 0.7;
  double min_new_token_ratio = 0.1;
  double new_token_ratio_decay = (0.7 - 0.1) / 600;
  double retract_new_token_ratio = 1.0;
  // A very long max_new_tokens should not block admission for its whole length.
  int reserve_clip_tokens = 4096;
};

class NewTokenRatio {
 public:
  explicit NewTokenRatio(const Tuning& t) : t_(t), value_(t.init_new_token_ratio) {}
  double value() const { return value_; }
  void decay() { value_ = std::max(t_.min_new_token_ratio, value_ - t_.new_token_ratio_decay); }
  void on_retract() { value_ = std::max(value_, t_.retract_new_token_ratio); }

 private:
  Tuning t_;
  double value_;
};

// Tokens to keep free for a request that may still produce `remaining` tokens.
inline int64_t reserve_tokens(int remaining, double ratio, const Tuning& t) {
  const int r = std::clamp(remaining, 0, t.reserve_clip_tokens);
  return static_cast<int64_t>(std::ceil(static_cast<double>(r) * ratio));
}

// Prompt tokens a prefilling request forwards this step: at most `chunked_prefill_size`
// (<= 0: no chunking) and what is left of the step's `budget`. Without chunking a prompt
// is never split: it waits for a step with room, except as the step's first prefill (a
// prompt longer than the budget would never run otherwise). 0: none this step.
inline int prefill_chunk(int uncomputed, int chunked_prefill_size, int budget, bool first_prefill) {
  int n = uncomputed;
  if (chunked_prefill_size > 0) n = std::min(n, chunked_prefill_size);
  if (n <= budget) return n;
  if (chunked_prefill_size > 0) return std::max(budget, 0);
  return first_prefill ? n : 0;
}

}  // namespace pdctl::engine::policy

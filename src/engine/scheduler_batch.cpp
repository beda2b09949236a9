#include "engine/scheduler_batch.h"

#include <algorithm>
#include <cmath>

namespace pdctl::engine {

void StepBatch::clear() {
  entries_.clear();
  inputs_.clear();
  prefill_tokens_ = 0;
  decode_tokens_ = 0;
}

void StepBatch::add(Request& r, int32_t num_tokens, bool all_logits, bool prefill) {
  Entry e;
  e.request = &r;
  e.start = r.kv_len;
  e.num_tokens = num_tokens;
  e.all_logits = all_logits;
  e.prefill = prefill;
  entries_.push_back(e);
  SequenceInput s;
  s.tokens = std::span<const int32_t>(r.fill).subspan(static_cast<size_t>(r.kv_len), static_cast<size_t>(num_tokens));
  s.start_pos = r.kv_len;
  s.page_table = r.pages;
  s.all_logits = all_logits;
  inputs_.push_back(s);
  (prefill ? prefill_tokens_ : decode_tokens_) += num_tokens;
}

TokenLogprobInfo LogprobCalculator::compute(std::span<const float> v, int32_t token, int top_n) {
  const float mx = *std::max_element(v.begin(), v.end());
  double sum = 0;
  for (float x : v) sum += std::exp(static_cast<double>(x - mx));
  const double lse = static_cast<double>(mx) + std::log(sum);
  TokenLogprobInfo info;
  info.token = token;
  info.logprob = static_cast<float>(static_cast<double>(v[static_cast<size_t>(token)]) - lse);
  if (top_n <= 0) return info;
  const size_t n = std::min(static_cast<size_t>(top_n), v.size());
  order_.resize(v.size());
  for (size_t i = 0; i < v.size(); ++i) order_[i] = static_cast<int32_t>(i);
  std::partial_sort(order_.begin(), order_.begin() + static_cast<std::ptrdiff_t>(n), order_.end(),
                    [&](int32_t a, int32_t b) {
                      const float la = v[static_cast<size_t>(a)], lb = v[static_cast<size_t>(b)];
                      return la > lb || (la == lb && a < b);
                    });
  info.top.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const int32_t t = order_[i];
    info.top.push_back({t, static_cast<float>(static_cast<double>(v[static_cast<size_t>(t)]) - lse)});
  }
  return info;
}

void collect_input_logprobs(Request& r, const StepBatch::Entry& e, const ForwardOutput& out, size_t seq,
                            LogprobCalculator& calc) {
  if (!e.all_logits) return;
  const int start = r.req.logprob_start_len;
  const int top_n = r.req.sampling.top_logprobs_num;
  for (int32_t j = 0; j < e.num_tokens; ++j) {
    const int tok = e.start + j + 1;  // the token this row predicts
    if (tok < std::max(start, 1) || tok >= r.prompt_len) continue;
    r.input_logprobs[static_cast<size_t>(tok - start)] = calc.compute(out.row(seq, j), r.fill[static_cast<size_t>(tok)], top_n);
  }
}

}  // namespace pdctl::engine

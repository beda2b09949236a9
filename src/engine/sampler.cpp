#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

namespace pdctl::engine {
namespace {

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// log-softmax of v into out (double sums for stability).
void log_softmax(std::span<const float> v, std::vector<float>& out) {
  const float mx = *std::max_element(v.begin(), v.end());
  double sum = 0;
  for (float x : v) sum += std::exp(static_cast<double>(x - mx));
  const double lse = static_cast<double>(mx) + std::log(sum);
  out.resize(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = static_cast<float>(static_cast<double>(v[i]) - lse);
}

int32_t argmax(std::span<const float> v) {
  int32_t best = 0;
  for (size_t i = 1; i < v.size(); ++i) {
    if (v[i] > v[static_cast<size_t>(best)]) best = static_cast<int32_t>(i);
  }
  return best;
}

}  // namespace

Status SamplingParams::validate(int64_t vocab) const {
  auto bad = [](const char* what, double v) {
    return Status::invalid_argument(fmt::format("{} = {} is out of range", what, v));
  };
  if (!(temperature >= 0) || !std::isfinite(temperature)) return bad("temperature", temperature);
  if (!(top_p > 0 && top_p <= 1)) return bad("top_p", top_p);
  if (!(min_p >= 0 && min_p <= 1)) return bad("min_p", min_p);
  if (!(repetition_penalty > 0) || !std::isfinite(repetition_penalty)) return bad("repetition_penalty", repetition_penalty);
  if (!(frequency_penalty >= -2 && frequency_penalty <= 2)) return bad("frequency_penalty", frequency_penalty);
  if (!(presence_penalty >= -2 && presence_penalty <= 2)) return bad("presence_penalty", presence_penalty);
  if (max_new_tokens < 0) return bad("max_new_tokens", max_new_tokens);
  if (top_logprobs_num < 0 || top_logprobs_num > vocab) return bad("top_logprobs_num", top_logprobs_num);
  for (int32_t t : stop_token_ids) {
    if (t < 0 || t >= vocab) return bad("stop_token_ids entry", t);
  }
  return Status::ok();
}

SamplerState::SamplerState(const SamplingParams& p, uint64_t default_seed, std::span<const int32_t> prompt) {
  uint64_t s = p.seed.value_or(default_seed);
  for (uint64_t& w : state_) w = splitmix64(s);
  if (p.repetition_penalty != 1.0f) {
    prompt_tokens_.assign(prompt.begin(), prompt.end());
    std::sort(prompt_tokens_.begin(), prompt_tokens_.end());
    prompt_tokens_.erase(std::unique(prompt_tokens_.begin(), prompt_tokens_.end()), prompt_tokens_.end());
  }
}

void SamplerState::accept(int32_t token) {
  output_.push_back(token);
  ++output_counts_[token];
}

double SamplerState::next_uniform() {
  const uint64_t result = rotl(state_[1] * 5, 7) * 9;
  const uint64_t t = state_[1] << 17;
  state_[2] ^= state_[0];
  state_[3] ^= state_[1];
  state_[1] ^= state_[2];
  state_[0] ^= state_[3];
  state_[2] ^= t;
  state_[3] = rotl(state_[3], 45);
  return static_cast<double>(result >> 11) * (1.0 / 9007199254740992.0);
}

SampleResult Sampler::sample(std::span<const float> logits, const SamplingParams& p, SamplerState& st) {
  const size_t V = logits.size();
  work_.assign(logits.begin(), logits.end());
  // Penalties.
  if (p.repetition_penalty != 1.0f) {
    auto penalize = [&](int32_t t) {
      float& l = work_[static_cast<size_t>(t)];
      l = l > 0 ? l / p.repetition_penalty : l * p.repetition_penalty;
    };
    for (int32_t t : st.prompt_tokens_) penalize(t);
    for (const auto& [t, _] : st.output_counts_) {
      if (!std::binary_search(st.prompt_tokens_.begin(), st.prompt_tokens_.end(), t)) penalize(t);
    }
  }
  if (p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f) {
    for (const auto& [t, n] : st.output_counts_) {
      work_[static_cast<size_t>(t)] -= p.frequency_penalty * static_cast<float>(n) + p.presence_penalty;
    }
  }
  const bool want_logprobs = p.return_logprob || p.top_logprobs_num > 0;
  SampleResult r;
  std::vector<float> logprobs;
  if (p.greedy()) {
    r.token = argmax(work_);
    if (want_logprobs) log_softmax(work_, logprobs);
  } else {
    for (float& l : work_) l /= p.temperature;
    if (want_logprobs) log_softmax(work_, logprobs);
    // Candidates, most likely first (ties: lower id first) -- only as many as needed.
    idx_.resize(V);
    for (size_t i = 0; i < V; ++i) idx_[i] = static_cast<int32_t>(i);
    auto more_likely = [&](int32_t a, int32_t b) {
      const float la = work_[static_cast<size_t>(a)], lb = work_[static_cast<size_t>(b)];
      return la > lb || (la == lb && a < b);
    };
    size_t n = V;
    if (p.top_k > 0 && static_cast<size_t>(p.top_k) < V) n = static_cast<size_t>(p.top_k);
    const bool need_order = n < V || p.top_p < 1.0f;
    if (need_order) {
      std::partial_sort(idx_.begin(), idx_.begin() + static_cast<std::ptrdiff_t>(n), idx_.end(), more_likely);
    } else {
      n = V;
    }
    const float mx = need_order ? work_[static_cast<size_t>(idx_[0])] : *std::max_element(work_.begin(), work_.end());
    std::vector<double> probs(n);
    double sum = 0;
    for (size_t i = 0; i < n; ++i) {
      probs[i] = std::exp(static_cast<double>(work_[static_cast<size_t>(idx_[i])] - mx));
      sum += probs[i];
    }
    size_t keep = n;
    if (p.top_p < 1.0f) {  // the smallest prefix whose mass reaches top_p
      double cum = 0;
      for (size_t i = 0; i < n; ++i) {
        cum += probs[i] / sum;
        if (cum >= p.top_p) {
          keep = i + 1;
          break;
        }
      }
    }
    if (p.min_p > 0.0f) {  // relative to the most likely token (probs are exp(l - max))
      double pmax = 0;
      for (size_t i = 0; i < keep; ++i) pmax = std::max(pmax, probs[i]);
      for (size_t i = 0; i < keep; ++i) {
        if (probs[i] < p.min_p * pmax) probs[i] = 0;
      }
    }
    double total = 0;
    for (size_t i = 0; i < keep; ++i) total += probs[i];
    const double u = st.next_uniform() * total;
    double cum = 0;
    r.token = idx_[0];  // keep >= 1 and the top token's prob is 1 (never cut): something is picked
    for (size_t i = 0; i < keep; ++i) {
      if (probs[i] == 0) continue;
      r.token = idx_[i];  // the last candidate with mass, should rounding leave u beyond cum
      cum += probs[i];
      if (u < cum) break;
    }
  }
  if (want_logprobs) {
    r.logprob = logprobs[static_cast<size_t>(r.token)];
    if (p.top_logprobs_num > 0) {
      std::vector<int32_t> order(V);
      for (size_t i = 0; i < V; ++i) order[i] = static_cast<int32_t>(i);
      const size_t n = std::min<size_t>(static_cast<size_t>(p.top_logprobs_num), V);
      std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(n), order.end(), [&](int32_t a, int32_t b) {
        const float la = logprobs[static_cast<size_t>(a)], lb = logprobs[static_cast<size_t>(b)];
        return la > lb || (la == lb && a < b);
      });
      for (size_t i = 0; i < n; ++i) r.top_logprobs.push_back({order[i], logprobs[static_cast<size_t>(order[i])]});
    }
  }
  return r;
}

FinishReason check_finish(int32_t token, int generated, const SamplingParams& p, std::span<const int32_t> eos) {
  if (std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(), token) != p.stop_token_ids.end()) {
    return FinishReason::kStopToken;
  }
  if (!p.ignore_eos && std::find(eos.begin(), eos.end(), token) != eos.end()) return FinishReason::kStopToken;
  if (generated >= p.max_new_tokens) return FinishReason::kLength;
  return FinishReason::kNone;
}

}  // namespace pdctl::engine

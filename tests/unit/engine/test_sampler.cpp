#include <doctest/doctest.h>

#include <cmath>
#include <map>

#include "engine/sampler.h"

using namespace pdctl::engine;

namespace {
std::vector<float> logits_of(std::initializer_list<float> v) { return std::vector<float>(v); }
}  // namespace

TEST_CASE("sampler: greedy is argmax with ties to the lowest id, logprobs are log-softmax") {
  Sampler s;
  SamplingParams p;
  p.temperature = 0;
  p.return_logprob = true;
  p.top_logprobs_num = 3;
  SamplerState st(p, 1, {});
  auto l = logits_of({0.5f, 2.0f, 2.0f, -1.0f});
  SampleResult r = s.sample(l, p, st);
  CHECK(r.token == 1);
  double z = 0;
  for (float x : l) z += std::exp(x);
  CHECK(r.logprob == doctest::Approx(2.0 - std::log(z)).epsilon(1e-5));
  REQUIRE(r.top_logprobs.size() == 3);
  CHECK(r.top_logprobs[0].token == 1);
  CHECK(r.top_logprobs[1].token == 2);
  CHECK(r.top_logprobs[2].token == 0);
  CHECK(r.top_logprobs[2].logprob == doctest::Approx(0.5 - std::log(z)).epsilon(1e-5));
  p.temperature = 1.0f;
  p.top_k = 1;  // also greedy
  CHECK(s.sample(l, p, st).token == 1);
}

TEST_CASE("sampler: the same seed gives the same tokens; the distribution follows temperature") {
  Sampler s;
  SamplingParams p;
  p.temperature = 1.0f;
  p.seed = 42;
  auto l = logits_of({0.0f, 1.0f, 2.0f, 3.0f});
  std::vector<int32_t> a, b;
  SamplerState sa(p, 0, {}), sb(p, 0, {});
  for (int i = 0; i < 200; ++i) {
    a.push_back(s.sample(l, p, sa).token);
    b.push_back(s.sample(l, p, sb).token);
  }
  CHECK(a == b);
  SamplingParams p2 = p;
  p2.seed = 43;
  SamplerState sc(p2, 0, {});
  std::vector<int32_t> c;
  for (int i = 0; i < 200; ++i) c.push_back(s.sample(l, p2, sc).token);
  CHECK(a != c);
  // Frequencies near softmax: p(3) = e^3 / sum = 0.644.
  SamplerState sd(p, 0, {});
  int n3 = 0;
  const int N = 20000;
  for (int i = 0; i < N; ++i) n3 += s.sample(l, p, sd).token == 3;
  CHECK(static_cast<double>(n3) / N == doctest::Approx(0.6439).epsilon(0.03));
}

TEST_CASE("sampler: top_k, top_p and min_p cut the candidates") {
  Sampler s;
  auto l = logits_of({0.0f, 1.0f, 2.0f, 3.0f, 3.0f});
  auto seen = [&](SamplingParams p) {
    p.seed = 7;
    SamplerState st(p, 0, {});
    std::map<int32_t, int> m;
    for (int i = 0; i < 2000; ++i) ++m[s.sample(l, p, st).token];
    return m;
  };
  SamplingParams p;
  p.top_k = 2;
  auto m = seen(p);
  CHECK(m.size() == 2);
  CHECK(m.count(3) == 1);
  CHECK(m.count(4) == 1);
  p = {};
  p.top_p = 0.5f;  // 3 and 4 hold 0.37 each: both needed to reach 0.5
  m = seen(p);
  CHECK(m.size() == 2);
  p = {};
  p.top_p = 0.3f;  // the first candidate alone reaches 0.3; ties go to the lower id
  m = seen(p);
  CHECK(m.size() == 1);
  CHECK(m.count(3) == 1);
  p = {};
  p.min_p = 0.3f;  // e^2/e^3 = 0.37 survives, e^1/e^3 = 0.135 does not
  m = seen(p);
  CHECK(m.size() == 3);
  CHECK(m.count(2) == 1);
}

TEST_CASE("sampler: repetition, frequency and presence penalties") {
  Sampler s;
  SamplingParams p;
  p.temperature = 0;
  auto l = logits_of({1.0f, 0.9f, -0.5f, -0.45f});
  {
    p.repetition_penalty = 2.0f;  // prompt token 0: 1.0 -> 0.5; so 1 wins
    SamplerState st(p, 0, std::vector<int32_t>{0});
    CHECK(s.sample(l, p, st).token == 1);
    // A negative logit is multiplied: -0.45 -> -0.9 (so 2 beats 3 if both were top)
    auto l2 = logits_of({-0.5f, -0.45f});
    SamplerState st2(p, 0, std::vector<int32_t>{1});
    CHECK(s.sample(l2, p, st2).token == 0);
  }
  {
    p = {};
    p.temperature = 0;
    p.frequency_penalty = 0.06f;
    SamplerState st(p, 0, std::vector<int32_t>{0});  // the prompt does not count
    CHECK(s.sample(l, p, st).token == 0);
    st.accept(0);
    CHECK(s.sample(l, p, st).token == 0);  // 1.0 - 0.06 > 0.9
    st.accept(0);
    CHECK(s.sample(l, p, st).token == 1);  // 1.0 - 0.12 < 0.9
    CHECK(st.output() == std::vector<int32_t>{0, 0});
  }
  {
    p = {};
    p.temperature = 0;
    p.presence_penalty = 0.2f;
    SamplerState st(p, 0, {});
    st.accept(0);
    st.accept(0);
    st.accept(0);
    CHECK(s.sample(l, p, st).token == 1);  // 1.0 - 0.2 once, whatever the count
    p.presence_penalty = 0.05f;
    CHECK(s.sample(l, p, st).token == 0);
  }
}

TEST_CASE("sampler: stop tokens, EOS, ignore_eos, max_new_tokens, validation") {
  SamplingParams p;
  p.max_new_tokens = 3;
  p.stop_token_ids = {7};
  const std::vector<int32_t> eos = {2};
  CHECK(check_finish(5, 1, p, eos) == FinishReason::kNone);
  CHECK(check_finish(7, 1, p, eos) == FinishReason::kStopToken);
  CHECK(check_finish(2, 1, p, eos) == FinishReason::kStopToken);
  CHECK(check_finish(5, 3, p, eos) == FinishReason::kLength);
  p.ignore_eos = true;
  CHECK(check_finish(2, 1, p, eos) == FinishReason::kNone);
  CHECK(check_finish(7, 1, p, eos) == FinishReason::kStopToken);

  CHECK(p.validate(10).is_ok());
  SamplingParams bad;
  bad.top_p = 0;
  CHECK_FALSE(bad.validate(10).is_ok());
  bad = {};
  bad.temperature = -1;
  CHECK_FALSE(bad.validate(10).is_ok());
  bad = {};
  bad.stop_token_ids = {10};
  CHECK_FALSE(bad.validate(10).is_ok());
  bad = {};
  bad.top_logprobs_num = 11;
  CHECK_FALSE(bad.validate(10).is_ok());
}

// Dummy Llama-3- and Qwen-shaped models written by the test as HF safetensors directories
// and as GGUF files give the same greedy tokens through both loaders: this pins the q/k
// row order (GGUF `llama` rotates adjacent pairs, HF halves), biases, q/k norms and llama3
// RoPE scaling. Then dtype conversions agree within stated tolerances.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/dummy_model.h"
#include "engine/model_writer.h"
#include "engine_test_util.h"

using namespace pdctl::engine;
using namespace pdctl::engine::test;

namespace {

ModelConfig llama3_shape() {
  ModelConfig c;
  c.arch = Arch::kLlama;
  c.hidden_size = 128;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 32;
  c.intermediate_size = 256;
  c.vocab_size = 320;
  c.context_length = 512;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 500000;
  // A short original context so that every llama3 branch (kept, scaled, smoothed) is hit.
  c.llama3_scaling = Llama3RopeScaling{8.0, 1.0, 4.0, 64};
  c.rope_freq_factors = llama3_rope_freq_factors(c.head_dim, c.rope_theta, *c.llama3_scaling);
  c.rope_style = RopeStyle::kHalves;
  c.tie_word_embeddings = true;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  return c;
}

ModelConfig qwen2_shape() {
  ModelConfig c = llama3_shape();
  c.arch = Arch::kQwen2;
  c.rope_theta = 1000000;
  c.llama3_scaling.reset();
  c.rope_freq_factors.clear();
  c.attention_bias = true;
  c.tie_word_embeddings = false;
  c.rms_norm_eps = 1e-6;
  return c;
}

ModelConfig qwen3_shape() {
  ModelConfig c = qwen2_shape();
  c.arch = Arch::kQwen3;
  c.attention_bias = false;
  c.qk_norm = true;
  c.head_dim = 48;  // head_dim * heads != hidden, as in real Qwen3 models
  return c;
}

const std::vector<std::vector<int32_t>> kPrompts = {
    {1, 17, 200, 45, 3, 99, 150, 7, 8, 260, 31, 64, 128, 5, 6, 77, 88, 1, 250, 33},
    {1, 300, 2, 9},
    {1, 42},
};

std::vector<std::vector<int32_t>> tokens_of(LoadedModel m, int chunk = 0) {
  auto r = runner_for(std::move(m));
  GenerateOptions o;
  o.max_new_tokens = 24;
  o.chunk = chunk;
  return greedy(*r, kPrompts, o);
}

std::vector<float> first_logits(LoadedModel m) {
  auto r = runner_for(std::move(m));
  GenerateOptions o;
  o.max_new_tokens = 1;
  std::vector<std::vector<float>> l;
  greedy(*r, {kPrompts[0]}, o, &l);
  return l[0];
}

// max |a - b| / max |a|
double rel_max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double d = 0, m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    d = std::max(d, static_cast<double>(std::fabs(a[i] - b[i])));
    m = std::max(m, static_cast<double>(std::fabs(a[i])));
  }
  return d / m;
}

void round_trip(const ModelConfig& c, const char* what) {
  INFO(what);
  TempDir dir;
  auto m = make_random_model(c, DType::kF32, 1234);
  REQUIRE_MESSAGE(m.has_value(), m.status().to_string());
  REQUIRE(write_hf_model(*m, dir / "hf").is_ok());
  REQUIRE(write_gguf_model(*m, dir / "model.gguf").is_ok());

  LoadedModel hf = load_ok(dir / "hf");
  LoadedModel gg = load_ok(dir / "model.gguf");
  CHECK(hf.config.rope_style == RopeStyle::kHalves);
  CHECK(gg.config.rope_style == (c.arch == Arch::kLlama ? RopeStyle::kAdjacentPairs : RopeStyle::kHalves));
  CHECK(hf.config.attention_bias == c.attention_bias);
  CHECK(gg.config.attention_bias == c.attention_bias);
  CHECK(gg.config.qk_norm == c.qk_norm);
  CHECK(gg.config.tie_word_embeddings == c.tie_word_embeddings);
  CHECK(gg.config.head_dim == c.head_dim);
  CHECK(gg.config.rope_freq_factors == c.rope_freq_factors);
  CHECK(hf.config.rope_freq_factors == c.rope_freq_factors);

  const auto direct = tokens_of(std::move(m).value());
  const auto via_hf = tokens_of(load_ok(dir / "hf"));
  const auto via_gguf = tokens_of(load_ok(dir / "model.gguf"));
  CHECK(via_hf == direct);
  CHECK(via_gguf == direct);
  CHECK(tokens_of(load_ok(dir / "model.gguf"), 5) == direct);  // chunked prefill too

  // The check can fail: the GGUF weights read with the other RoPE pairing give other tokens.
  if (c.arch == Arch::kLlama) {
    LoadedModel wrong = load_ok(dir / "model.gguf");
    wrong.config.rope_style = RopeStyle::kHalves;
    CHECK(tokens_of(std::move(wrong)) != direct);
  }
  // And the biases matter.
  if (c.attention_bias) {
    LoadedModel nobias = load_ok(dir / "hf");
    nobias.config.attention_bias = false;
    CHECK(tokens_of(std::move(nobias)) != direct);
  }
}

}  // namespace

TEST_CASE("round trip: Llama-3 shape with llama3 RoPE scaling, HF and GGUF give the same tokens") {
  round_trip(llama3_shape(), "llama3");
}

TEST_CASE("round trip: Qwen2 shape with q/k/v biases, HF and GGUF give the same tokens") {
  round_trip(qwen2_shape(), "qwen2");
}

TEST_CASE("round trip: Qwen3 shape with q/k norms and a wide head, HF and GGUF give the same tokens") {
  round_trip(qwen3_shape(), "qwen3");
}

TEST_CASE("dtypes: BF16, F16 and Q8_0 copies of F32 weights agree on logits within tolerance") {
  TempDir dir;
  auto m = make_random_model(llama3_shape(), DType::kF32, 99);
  REQUIRE(m.has_value());
  ModelWriteOptions bf16{DType::kBF16, 3}, f16{DType::kF16, 2}, q8{DType::kQ8_0, 3};
  REQUIRE(write_hf_model(*m, dir / "f32").is_ok());
  REQUIRE(write_hf_model(*m, dir / "bf16", bf16).is_ok());
  REQUIRE(write_gguf_model(*m, dir / "f16.gguf", f16).is_ok());  // GGUF v2 on the way
  REQUIRE(write_gguf_model(*m, dir / "q8.gguf", q8).is_ok());
  LoadedModel lb = load_ok(dir / "bf16");
  CHECK(lb.config.weight_dtype == DType::kBF16);
  CHECK(lb.weights.layers[0].wq.dtype == DType::kBF16);
  CHECK(lb.weights.layers[0].attn_norm.dtype == DType::kBF16);
  LoadedModel lq = load_ok(dir / "q8.gguf");
  CHECK(lq.weights.layers[0].wq.dtype == DType::kQ8_0);

  const auto ref = first_logits(load_ok(dir / "f32"));
  // Stated tolerances, as a fraction of the largest |logit|: BF16 keeps 8 mantissa bits,
  // so weights are off by up to 2^-9 relative; F16 and Q8_0 are finer.
  const double d_bf16 = rel_max_diff(ref, first_logits(load_ok(dir / "bf16")));
  const double d_f16 = rel_max_diff(ref, first_logits(load_ok(dir / "f16.gguf")));
  const double d_q8 = rel_max_diff(ref, first_logits(load_ok(dir / "q8.gguf")));
  MESSAGE("max logit difference relative to max |logit|: bf16 " << d_bf16 << ", f16 " << d_f16 << ", q8_0 " << d_q8);
  CHECK(d_bf16 < 0.02);  // measured 0.008
  CHECK(d_f16 < 0.003);   // measured 0.0007
  CHECK(d_q8 < 0.03);     // measured 0.014
  CHECK(d_bf16 > 0);  // the copies really differ
}

TEST_CASE("dummy presets: tiny and llama-1b shapes") {
  auto tiny = dummy_preset("tiny");
  REQUIRE(tiny.has_value());
  CHECK(tiny->vocab_size >= 259);
  CHECK(tiny->bos_token_id == 1);
  CHECK(tiny->eos_token_ids == std::vector<int32_t>{2});
  CHECK(tiny->context_length >= 2048);
  auto big = dummy_preset("llama-1b");
  REQUIRE(big.has_value());
  CHECK(big->hidden_size == 2048);
  CHECK(big->num_layers == 16);
  CHECK(big->num_heads == 32);
  CHECK(big->num_kv_heads == 8);
  CHECK(big->intermediate_size == 8192);
  CHECK(big->vocab_size == 128256);
  CHECK(big->tie_word_embeddings);
  CHECK(big->weight_dtype == DType::kF16);
  CHECK(big->num_parameters() == 1235814400);  // Llama-3.2-1B
  CHECK_FALSE(dummy_preset("nope").has_value());

  // The same seed, the same weights; another seed, others.
  auto a = make_dummy_model("tiny", "auto", 5), b = make_dummy_model("tiny", "auto", 5),
       c = make_dummy_model("tiny", "float16", 6);
  REQUIRE(a.has_value());
  REQUIRE(b.has_value());
  REQUIRE(c.has_value());
  CHECK(std::memcmp(a->weights.layers[1].w_up.data, b->weights.layers[1].w_up.data, a->weights.layers[1].w_up.bytes()) == 0);
  CHECK(c->weights.layers[1].w_up.dtype == DType::kF16);
  auto tok = tokens_of(std::move(a).value());
  CHECK(tok[0].size() == 24);
}

TEST_CASE("dummy from a directory's config.json") {
  TempDir dir;
  auto m = make_random_model(qwen2_shape(), DType::kF32, 1);
  REQUIRE(m.has_value());
  REQUIRE(write_hf_model(*m, dir / "q").is_ok());
  auto d = make_dummy_model(dir / "q", "bfloat16", 3);
  REQUIRE_MESSAGE(d.has_value(), d.status().to_string());
  CHECK(d->config.arch == Arch::kQwen2);
  CHECK(d->config.attention_bias);
  CHECK(d->weights.layers[0].wq.dtype == DType::kBF16);
}

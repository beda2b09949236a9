#include "engine/weights.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace pdctl::engine {

int64_t WeightRef::elements() const {
  if (shape.empty()) return 0;
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string gguf_tensor_name(WeightKind k, int l) {
  auto blk = [l](const char* s) { return fmt::format("blk.{}.{}", l, s); };
  switch (k) {
    case WeightKind::kTokEmbd: return "token_embd.weight";
    case WeightKind::kOutputNorm: return "output_norm.weight";
    case WeightKind::kOutput: return "output.weight";
    case WeightKind::kAttnNorm: return blk("attn_norm.weight");
    case WeightKind::kWq: return blk("attn_q.weight");
    case WeightKind::kWk: return blk("attn_k.weight");
    case WeightKind::kWv: return blk("attn_v.weight");
    case WeightKind::kWo: return blk("attn_output.weight");
    case WeightKind::kBq: return blk("attn_q.bias");
    case WeightKind::kBk: return blk("attn_k.bias");
    case WeightKind::kBv: return blk("attn_v.bias");
    case WeightKind::kQNorm: return blk("attn_q_norm.weight");
    case WeightKind::kKNorm: return blk("attn_k_norm.weight");
    case WeightKind::kFfnNorm: return blk("ffn_norm.weight");
    case WeightKind::kGate: return blk("ffn_gate.weight");
    case WeightKind::kUp: return blk("ffn_up.weight");
    case WeightKind::kDown: return blk("ffn_down.weight");
  }
  return "";
}

std::string hf_tensor_name(WeightKind k, int l) {
  auto layer = [l](const char* s) { return fmt::format("model.layers.{}.{}", l, s); };
  switch (k) {
    case WeightKind::kTokEmbd: return "model.embed_tokens.weight";
    case WeightKind::kOutputNorm: return "model.norm.weight";
    case WeightKind::kOutput: return "lm_head.weight";
    case WeightKind::kAttnNorm: return layer("input_layernorm.weight");
    case WeightKind::kWq: return layer("self_attn.q_proj.weight");
    case WeightKind::kWk: return layer("self_attn.k_proj.weight");
    case WeightKind::kWv: return layer("self_attn.v_proj.weight");
    case WeightKind::kWo: return layer("self_attn.o_proj.weight");
    case WeightKind::kBq: return layer("self_attn.q_proj.bias");
    case WeightKind::kBk: return layer("self_attn.k_proj.bias");
    case WeightKind::kBv: return layer("self_attn.v_proj.bias");
    case WeightKind::kQNorm: return layer("self_attn.q_norm.weight");
    case WeightKind::kKNorm: return layer("self_attn.k_norm.weight");
    case WeightKind::kFfnNorm: return layer("post_attention_layernorm.weight");
    case WeightKind::kGate: return layer("mlp.gate_proj.weight");
    case WeightKind::kUp: return layer("mlp.up_proj.weight");
    case WeightKind::kDown: return layer("mlp.down_proj.weight");
  }
  return "";
}

bool is_matrix(WeightKind k) {
  switch (k) {
    case WeightKind::kTokEmbd: case WeightKind::kOutput: case WeightKind::kWq: case WeightKind::kWk:
    case WeightKind::kWv: case WeightKind::kWo: case WeightKind::kGate: case WeightKind::kUp:
    case WeightKind::kDown:
      return true;
    case WeightKind::kOutputNorm: case WeightKind::kAttnNorm: case WeightKind::kBq: case WeightKind::kBk:
    case WeightKind::kBv: case WeightKind::kQNorm: case WeightKind::kKNorm: case WeightKind::kFfnNorm:
      return false;
  }
  return false;
}

std::vector<int64_t> expected_shape(const ModelConfig& c, WeightKind k) {
  const int64_t h = c.hidden_size, q = c.q_dim(), kv = c.kv_dim(), f = c.intermediate_size;
  switch (k) {
    case WeightKind::kTokEmbd: return {c.vocab_size, h};
    case WeightKind::kOutputNorm: return {h};
    case WeightKind::kOutput: return c.tie_word_embeddings ? std::vector<int64_t>{} : std::vector<int64_t>{c.vocab_size, h};
    case WeightKind::kAttnNorm: return {h};
    case WeightKind::kWq: return {q, h};
    case WeightKind::kWk: return {kv, h};
    case WeightKind::kWv: return {kv, h};
    case WeightKind::kWo: return {h, q};
    case WeightKind::kBq: return c.attention_bias ? std::vector<int64_t>{q} : std::vector<int64_t>{};
    case WeightKind::kBk: return c.attention_bias ? std::vector<int64_t>{kv} : std::vector<int64_t>{};
    case WeightKind::kBv: return c.attention_bias ? std::vector<int64_t>{kv} : std::vector<int64_t>{};
    case WeightKind::kQNorm: return c.qk_norm ? std::vector<int64_t>{c.head_dim} : std::vector<int64_t>{};
    case WeightKind::kKNorm: return c.qk_norm ? std::vector<int64_t>{c.head_dim} : std::vector<int64_t>{};
    case WeightKind::kFfnNorm: return {h};
    case WeightKind::kGate: return {f, h};
    case WeightKind::kUp: return {f, h};
    case WeightKind::kDown: return {h, f};
  }
  return {};
}

WeightRef& weight_slot(ModelWeights& w, WeightKind k, int l) {
  switch (k) {
    case WeightKind::kTokEmbd: return w.tok_embd;
    case WeightKind::kOutputNorm: return w.output_norm;
    case WeightKind::kOutput: return w.output;
    case WeightKind::kAttnNorm: return w.layers[l].attn_norm;
    case WeightKind::kWq: return w.layers[l].wq;
    case WeightKind::kWk: return w.layers[l].wk;
    case WeightKind::kWv: return w.layers[l].wv;
    case WeightKind::kWo: return w.layers[l].wo;
    case WeightKind::kBq: return w.layers[l].bq;
    case WeightKind::kBk: return w.layers[l].bk;
    case WeightKind::kBv: return w.layers[l].bv;
    case WeightKind::kQNorm: return w.layers[l].q_norm;
    case WeightKind::kKNorm: return w.layers[l].k_norm;
    case WeightKind::kFfnNorm: return w.layers[l].ffn_norm;
    case WeightKind::kGate: return w.layers[l].w_gate;
    case WeightKind::kUp: return w.layers[l].w_up;
    case WeightKind::kDown: return w.layers[l].w_down;
  }
  return w.tok_embd;
}

const WeightRef& weight_slot(const ModelWeights& w, WeightKind k, int l) {
  return weight_slot(const_cast<ModelWeights&>(w), k, l);
}

namespace {

Status bind_one(const ModelConfig& c, const TensorLookup& lookup, std::string (*name_of)(WeightKind, int),
                const std::string& source, WeightKind k, int layer, WeightRef& out) {
  const std::vector<int64_t> want = expected_shape(c, k);
  if (want.empty()) return Status::ok();  // not part of this architecture
  const std::string name = name_of(k, layer);
  const RawTensor* t = lookup(name);
  if (!t) return Status::corrupt(fmt::format("{}: tensor '{}' is missing", source, name));
  const std::string label = fmt::format("{}: tensor '{}'", t->file, name);
  if (!t->dtype) return Status::unsupported(fmt::format("{} has dtype {}, which is not supported", label, t->dtype_name));
  if (t->shape != want) {
    return Status::corrupt(fmt::format("{} has shape [{}], the config requires [{}]", label,
                                       fmt::join(t->shape, ", "), fmt::join(want, ", ")));
  }
  const DType d = *t->dtype;
  if (d == DType::kQ8_0 && (!is_matrix(k) || want.back() % kQ8_0BlockElems != 0)) {
    return Status::unsupported(fmt::format("{}: Q8_0 is supported for matrices with rows of a multiple of 32", label));
  }
  out.name = label;
  out.dtype = d;
  out.shape = want;
  out.data = t->data;
  return Status::ok();
}

}  // namespace

Status bind_weights(const ModelConfig& c, const TensorLookup& lookup, std::string (*name_of)(WeightKind, int),
                    const std::string& source, ModelWeights& out) {
  out = ModelWeights{};
  out.layers.resize(static_cast<size_t>(c.num_layers));
  for (WeightKind k : kGlobalKinds) PDCTL_RETURN_IF_ERROR(bind_one(c, lookup, name_of, source, k, 0, weight_slot(out, k, 0)));
  for (int l = 0; l < c.num_layers; ++l) {
    for (WeightKind k : kLayerKinds) PDCTL_RETURN_IF_ERROR(bind_one(c, lookup, name_of, source, k, l, weight_slot(out, k, l)));
  }
  if (c.tie_word_embeddings) out.output = out.tok_embd;
  return Status::ok();
}

int64_t LoadedModel::weight_bytes() const {
  int64_t n = weights.tok_embd.bytes() + weights.output_norm.bytes();
  if (!config.tie_word_embeddings) n += weights.output.bytes();
  for (int l = 0; l < static_cast<int>(weights.layers.size()); ++l) {
    for (WeightKind k : kLayerKinds) n += weight_slot(weights, k, l).bytes();
  }
  return n;
}

int64_t LoadedModel::matmul_weight_bytes() const {
  int64_t n = weights.output.bytes();
  for (const LayerWeights& lw : weights.layers) {
    n += lw.wq.bytes() + lw.wk.bytes() + lw.wv.bytes() + lw.wo.bytes() + lw.w_gate.bytes() + lw.w_up.bytes() +
         lw.w_down.bytes();
  }
  return n;
}

}  // namespace pdctl::engine

#include "engine/model_config.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/gguf.h"

namespace pdctl::engine {

const char* arch_name(Arch a) {
  switch (a) {
    case Arch::kLlama: return "llama";
    case Arch::kMistral: return "mistral";
    case Arch::kQwen2: return "qwen2";
    case Arch::kQwen3: return "qwen3";
  }
  return "unknown";
}

int64_t ModelConfig::num_parameters() const {
  const int64_t attn = hidden_size * q_dim() * 2 + hidden_size * kv_dim() * 2 +
                       (attention_bias ? q_dim() + 2 * kv_dim() : 0) + (qk_norm ? 2 * head_dim : 0);
  const int64_t mlp = 3 * hidden_size * intermediate_size;
  const int64_t layer = attn + mlp + 2 * hidden_size;
  return num_layers * layer + vocab_size * hidden_size * (tie_word_embeddings ? 1 : 2) + hidden_size;
}

Status ModelConfig::validate(const std::string& where) const {
  auto bad = [&](const char* what, int64_t v) {
    return Status::corrupt(fmt::format("{}: {} = {} is not valid", where, what, v));
  };
  if (hidden_size <= 0) return bad("hidden size", hidden_size);
  if (num_layers <= 0 || num_layers > 1024) return bad("number of layers", num_layers);
  if (num_heads <= 0) return bad("number of attention heads", num_heads);
  if (num_kv_heads <= 0 || num_heads % num_kv_heads != 0) {
    return Status::corrupt(fmt::format("{}: {} attention heads are not a multiple of {} KV heads", where,
                                       num_heads, num_kv_heads));
  }
  if (head_dim <= 0 || head_dim % 2 != 0 || head_dim > 1024) return bad("head dim", head_dim);
  if (intermediate_size <= 0) return bad("intermediate size", intermediate_size);
  if (vocab_size <= 0 || vocab_size > (int64_t{1} << 31)) return bad("vocab size", vocab_size);
  if (context_length <= 0) return bad("context length", context_length);
  if (!(rms_norm_eps > 0) || !(rope_theta > 0)) {
    return Status::corrupt(fmt::format("{}: rms_norm_eps {} and rope_theta {} must be positive", where,
                                       rms_norm_eps, rope_theta));
  }
  if (!rope_freq_factors.empty() && static_cast<int64_t>(rope_freq_factors.size()) != head_dim / 2) {
    return Status::corrupt(fmt::format("{}: {} RoPE frequency factors for head dim {} (expected {})", where,
                                       rope_freq_factors.size(), head_dim, head_dim / 2));
  }
  for (int32_t e : eos_token_ids) {
    if (e < 0 || e >= vocab_size) return bad("eos token id", e);
  }
  if (bos_token_id >= vocab_size) return bad("bos token id", bos_token_id);
  return Status::ok();
}

std::vector<float> llama3_rope_freq_factors(int64_t head_dim, double theta, const Llama3RopeScaling& s) {
  const double pi = 3.14159265358979323846;
  const double low_wavelen = static_cast<double>(s.original_max_position_embeddings) / s.low_freq_factor;
  const double high_wavelen = static_cast<double>(s.original_max_position_embeddings) / s.high_freq_factor;
  std::vector<float> out;
  for (int64_t i = 0; i < head_dim; i += 2) {
    const double freq = 1.0 / std::pow(theta, static_cast<double>(i) / static_cast<double>(head_dim));
    const double wavelen = 2 * pi / freq;
    if (wavelen < high_wavelen) {
      out.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      out.push_back(static_cast<float>(s.factor));
    } else {
      const double smooth = (static_cast<double>(s.original_max_position_embeddings) / wavelen - s.low_freq_factor) /
                            (s.high_freq_factor - s.low_freq_factor);
      out.push_back(static_cast<float>(1.0 / ((1 - smooth) / s.factor + smooth)));
    }
  }
  return out;
}

namespace {

// Typed access to config.json: a wrong type is an error naming the key and file.
class JsonFields {
 public:
  JsonFields(const nlohmann::json& j, const std::string& file) : j_(j), file_(file) {}

  bool has(const char* key) const { return j_.contains(key) && !j_[key].is_null(); }
  Result<int64_t> integer(const char* key) const {
    if (!has(key)) return Status::corrupt(fmt::format("{}: key '{}' is missing", file_, key));
    const auto& v = j_[key];
    if (!v.is_number_integer()) return wrong(key, "an integer");
    return v.get<int64_t>();
  }
  Result<int64_t> integer_or(const char* key, int64_t dflt) const { return has(key) ? integer(key) : dflt; }
  Result<double> number_or(const char* key, double dflt) const {
    if (!has(key)) return dflt;
    if (!j_[key].is_number()) return wrong(key, "a number");
    return j_[key].get<double>();
  }
  Result<bool> boolean_or(const char* key, bool dflt) const {
    if (!has(key)) return dflt;
    if (!j_[key].is_boolean()) return wrong(key, "a boolean");
    return j_[key].get<bool>();
  }
  Status wrong(const std::string& key, const char* want) const {
    return Status::corrupt(fmt::format("{}: key '{}' is not {}", file_, key, want));
  }

 private:
  const nlohmann::json& j_;
  const std::string& file_;
};

Result<std::vector<int32_t>> token_ids(const nlohmann::json& v, const std::string& file, const char* key) {
  std::vector<int32_t> out;
  if (v.is_number_integer()) {
    out.push_back(v.get<int32_t>());
  } else if (v.is_array()) {
    for (const auto& e : v) {
      if (!e.is_number_integer()) return Status::corrupt(fmt::format("{}: key '{}' holds a non-integer", file, key));
      out.push_back(e.get<int32_t>());
    }
  } else if (!v.is_null()) {
    return Status::corrupt(fmt::format("{}: key '{}' is not an integer or a list of integers", file, key));
  }
  return out;
}

}  // namespace

Result<ModelConfig> config_from_hf(const nlohmann::json& j, const nlohmann::json* gen, const std::string& file) {
  if (!j.is_object()) return Status::corrupt(fmt::format("{}: not a JSON object", file));
  JsonFields f(j, file);
  ModelConfig c;
  if (!j.contains("architectures") || !j["architectures"].is_array() || j["architectures"].empty() ||
      !j["architectures"][0].is_string()) {
    return Status::corrupt(fmt::format("{}: key 'architectures' is missing or not a list of names", file));
  }
  const std::string a = j["architectures"][0].get<std::string>();
  if (a == "LlamaForCausalLM") {
    c.arch = Arch::kLlama;
  } else if (a == "MistralForCausalLM") {
    c.arch = Arch::kMistral;
  } else if (a == "Qwen2ForCausalLM") {
    c.arch = Arch::kQwen2;
  } else if (a == "Qwen3ForCausalLM") {
    c.arch = Arch::kQwen3;
  } else {
    return Status::unsupported(fmt::format(
        "{}: architecture '{}' (key 'architectures') is not supported; supported: LlamaForCausalLM, "
        "MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM",
        file, a));
  }
  c.rope_style = RopeStyle::kHalves;  // HF checkpoints: rotate_half
  PDCTL_ASSIGN_OR_RETURN(c.hidden_size, f.integer("hidden_size"));
  PDCTL_ASSIGN_OR_RETURN(c.num_layers, f.integer("num_hidden_layers"));
  PDCTL_ASSIGN_OR_RETURN(c.num_heads, f.integer("num_attention_heads"));
  PDCTL_ASSIGN_OR_RETURN(c.num_kv_heads, f.integer_or("num_key_value_heads", c.num_heads));
  PDCTL_ASSIGN_OR_RETURN(c.intermediate_size, f.integer("intermediate_size"));
  PDCTL_ASSIGN_OR_RETURN(c.vocab_size, f.integer("vocab_size"));
  PDCTL_ASSIGN_OR_RETURN(c.context_length, f.integer_or("max_position_embeddings", 2048));
  if (c.num_heads <= 0) return f.wrong("num_attention_heads", "a positive integer");
  PDCTL_ASSIGN_OR_RETURN(c.head_dim, f.integer_or("head_dim", c.hidden_size / c.num_heads));
  PDCTL_ASSIGN_OR_RETURN(c.rms_norm_eps, f.number_or("rms_norm_eps", 1e-6));
  PDCTL_ASSIGN_OR_RETURN(c.rope_theta, f.number_or("rope_theta", 10000.0));
  PDCTL_ASSIGN_OR_RETURN(c.tie_word_embeddings, f.boolean_or("tie_word_embeddings", false));
  PDCTL_ASSIGN_OR_RETURN(bool attn_bias, f.boolean_or("attention_bias", c.arch == Arch::kQwen2));
  c.attention_bias = attn_bias || c.arch == Arch::kQwen2;
  c.qk_norm = c.arch == Arch::kQwen3;
  PDCTL_ASSIGN_OR_RETURN(bool mlp_bias, f.boolean_or("mlp_bias", false));
  if (mlp_bias) return Status::unsupported(fmt::format("{}: key 'mlp_bias' = true is not supported", file));
  if (f.has("hidden_act") && j["hidden_act"] != "silu") {
    return Status::unsupported(fmt::format("{}: key 'hidden_act' = {} is not supported (only silu)", file,
                                           j["hidden_act"].dump()));
  }
  if (f.has("partial_rotary_factor")) {
    PDCTL_ASSIGN_OR_RETURN(double prf, f.number_or("partial_rotary_factor", 1.0));
    if (prf != 1.0) return Status::unsupported(fmt::format("{}: key 'partial_rotary_factor' != 1", file));
  }
  if (f.has("rope_scaling")) {
    const auto& rs = j["rope_scaling"];
    if (!rs.is_object()) return f.wrong("rope_scaling", "an object");
    JsonFields r(rs, file);
    std::string type;
    if (rs.contains("rope_type") && rs["rope_type"].is_string()) type = rs["rope_type"].get<std::string>();
    else if (rs.contains("type") && rs["type"].is_string()) type = rs["type"].get<std::string>();
    if (type == "llama3") {
      Llama3RopeScaling s;
      PDCTL_ASSIGN_OR_RETURN(s.factor, r.number_or("factor", s.factor));
      PDCTL_ASSIGN_OR_RETURN(s.low_freq_factor, r.number_or("low_freq_factor", s.low_freq_factor));
      PDCTL_ASSIGN_OR_RETURN(s.high_freq_factor, r.number_or("high_freq_factor", s.high_freq_factor));
      PDCTL_ASSIGN_OR_RETURN(s.original_max_position_embeddings,
                             r.integer_or("original_max_position_embeddings", s.original_max_position_embeddings));
      if (!(s.factor > 0) || !(s.high_freq_factor > s.low_freq_factor) || !(s.low_freq_factor > 0) ||
          s.original_max_position_embeddings <= 0) {
        return f.wrong("rope_scaling", "a valid llama3 scaling");
      }
      if (c.head_dim > 0) c.rope_freq_factors = llama3_rope_freq_factors(c.head_dim, c.rope_theta, s);
      c.llama3_scaling = s;
    } else if (type != "default" && !type.empty()) {
      return Status::unsupported(fmt::format("{}: key 'rope_scaling' of type '{}' is not supported (only llama3)",
                                             file, type));
    }
  }
  if (c.arch == Arch::kMistral && f.has("sliding_window")) {
    // Full attention only: a window shorter than the context would change the results,
    // so the context is cut to the window (then the two agree).
    PDCTL_ASSIGN_OR_RETURN(int64_t w, f.integer("sliding_window"));
    if (w > 0 && w < c.context_length) c.context_length = w;
  }
  if (c.arch == Arch::kQwen2 || c.arch == Arch::kQwen3) {
    PDCTL_ASSIGN_OR_RETURN(bool sw, f.boolean_or("use_sliding_window", false));
    if (sw) return Status::unsupported(fmt::format("{}: key 'use_sliding_window' = true is not supported", file));
  }
  if (j.contains("bos_token_id") && j["bos_token_id"].is_number_integer()) c.bos_token_id = j["bos_token_id"].get<int32_t>();
  if (j.contains("eos_token_id")) {
    PDCTL_ASSIGN_OR_RETURN(c.eos_token_ids, token_ids(j["eos_token_id"], file, "eos_token_id"));
  }
  // generation_config.json wins: Llama 3.1 lists all its end tokens there.
  if (gen && gen->is_object()) {
    if (gen->contains("bos_token_id") && (*gen)["bos_token_id"].is_number_integer()) {
      c.bos_token_id = (*gen)["bos_token_id"].get<int32_t>();
    }
    if (gen->contains("eos_token_id") && !(*gen)["eos_token_id"].is_null()) {
      PDCTL_ASSIGN_OR_RETURN(c.eos_token_ids, token_ids((*gen)["eos_token_id"], file, "eos_token_id"));
    }
  }
  if (f.has("torch_dtype") && j["torch_dtype"].is_string()) {
    auto d = parse_dtype(j["torch_dtype"].get<std::string>());
    if (d.has_value()) c.weight_dtype = *d;
  }
  PDCTL_RETURN_IF_ERROR(c.validate(file));
  return c;
}

Result<ModelConfig> config_from_gguf(const GgufFile& g) {
  const std::string& file = g.path();
  ModelConfig c;
  PDCTL_ASSIGN_OR_RETURN(std::string a, g.get_string("general.architecture"));
  if (a == "llama") {
    c.arch = Arch::kLlama;
    c.rope_style = RopeStyle::kAdjacentPairs;  // llama.cpp's converter permuted q/k rows
  } else if (a == "qwen2") {
    c.arch = Arch::kQwen2;
    c.rope_style = RopeStyle::kHalves;
    c.attention_bias = true;
  } else if (a == "qwen3") {
    c.arch = Arch::kQwen3;
    c.rope_style = RopeStyle::kHalves;
    c.qk_norm = true;
  } else {
    return Status::unsupported(fmt::format(
        "{}: architecture '{}' (key 'general.architecture') is not supported; supported: llama, qwen2, qwen3",
        file, a));
  }
  const std::string p = a + ".";
  PDCTL_ASSIGN_OR_RETURN(c.hidden_size, g.get_int(p + "embedding_length"));
  PDCTL_ASSIGN_OR_RETURN(c.num_layers, g.get_int(p + "block_count"));
  PDCTL_ASSIGN_OR_RETURN(c.num_heads, g.get_int(p + "attention.head_count"));
  c.num_kv_heads = c.num_heads;
  if (g.has(p + "attention.head_count_kv")) {
    PDCTL_ASSIGN_OR_RETURN(c.num_kv_heads, g.get_int(p + "attention.head_count_kv"));
  }
  PDCTL_ASSIGN_OR_RETURN(c.intermediate_size, g.get_int(p + "feed_forward_length"));
  PDCTL_ASSIGN_OR_RETURN(c.context_length, g.get_int(p + "context_length"));
  PDCTL_ASSIGN_OR_RETURN(c.rms_norm_eps, g.get_float(p + "attention.layer_norm_rms_epsilon"));
  if (g.has(p + "rope.freq_base")) {
    PDCTL_ASSIGN_OR_RETURN(c.rope_theta, g.get_float(p + "rope.freq_base"));
  }
  if (c.num_heads <= 0) return Status::corrupt(fmt::format("{}: key '{}attention.head_count' <= 0", file, p));
  c.head_dim = c.hidden_size / c.num_heads;
  if (g.has(p + "attention.key_length")) {
    PDCTL_ASSIGN_OR_RETURN(c.head_dim, g.get_int(p + "attention.key_length"));
  }
  if (g.has(p + "attention.value_length")) {
    PDCTL_ASSIGN_OR_RETURN(int64_t vl, g.get_int(p + "attention.value_length"));
    if (vl != c.head_dim) {
      return Status::unsupported(fmt::format("{}: key '{}attention.value_length' = {} differs from the key length {}",
                                             file, p, vl, c.head_dim));
    }
  }
  if (g.has(p + "rope.dimension_count")) {
    PDCTL_ASSIGN_OR_RETURN(int64_t rd, g.get_int(p + "rope.dimension_count"));
    if (rd != c.head_dim) {
      return Status::unsupported(fmt::format("{}: key '{}rope.dimension_count' = {}: partial RoPE (head dim {}) is not supported",
                                             file, p, rd, c.head_dim));
    }
  }
  if (g.has(p + "rope.scaling.type")) {
    PDCTL_ASSIGN_OR_RETURN(std::string st, g.get_string(p + "rope.scaling.type"));
    if (st != "none" && st != "llama3") {
      return Status::unsupported(fmt::format("{}: key '{}rope.scaling.type' = '{}' is not supported", file, p, st));
    }
  }
  const GgufTensorInfo* emb = g.tensor("token_embd.weight");
  if (!emb) return Status::corrupt(fmt::format("{}: tensor 'token_embd.weight' is missing", file));
  if (emb->dims.size() != 2) return Status::corrupt(fmt::format("{}: tensor 'token_embd.weight' is not 2-D", file));
  c.vocab_size = emb->dims[1];
  if (g.has(p + "vocab_size")) {
    PDCTL_ASSIGN_OR_RETURN(c.vocab_size, g.get_int(p + "vocab_size"));
  }
  c.tie_word_embeddings = g.tensor("output.weight") == nullptr;
  if (c.arch == Arch::kLlama) c.attention_bias = g.tensor("blk.0.attn_q.bias") != nullptr;
  if (const GgufTensorInfo* rf = g.tensor("rope_freqs.weight")) {
    if (rf->type != static_cast<uint32_t>(GgmlType::kF32) || rf->dims.size() != 1) {
      return Status::corrupt(fmt::format("{}: tensor 'rope_freqs.weight' is not a 1-D F32 tensor", file));
    }
    c.rope_freq_factors.resize(static_cast<size_t>(rf->dims[0]));
    std::memcpy(c.rope_freq_factors.data(), rf->data, c.rope_freq_factors.size() * 4);
  }
  if (g.has("tokenizer.ggml.bos_token_id")) {
    PDCTL_ASSIGN_OR_RETURN(int64_t b, g.get_int("tokenizer.ggml.bos_token_id"));
    c.bos_token_id = static_cast<int32_t>(b);
  }
  if (g.has("tokenizer.ggml.eos_token_id")) {
    PDCTL_ASSIGN_OR_RETURN(int64_t e, g.get_int("tokenizer.ggml.eos_token_id"));
    c.eos_token_ids.push_back(static_cast<int32_t>(e));
  }
  if (g.has("tokenizer.ggml.eot_token_id")) {
    PDCTL_ASSIGN_OR_RETURN(int64_t e, g.get_int("tokenizer.ggml.eot_token_id"));
    if (std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), e) == c.eos_token_ids.end()) {
      c.eos_token_ids.push_back(static_cast<int32_t>(e));
    }
  }
  if (const GgufTensorInfo* q = g.tensor("blk.0.attn_q.weight")) {
    switch (static_cast<GgmlType>(q->type)) {
      case GgmlType::kF16: c.weight_dtype = DType::kF16; break;
      case GgmlType::kBF16: c.weight_dtype = DType::kBF16; break;
      case GgmlType::kQ8_0: c.weight_dtype = DType::kQ8_0; break;
      default: c.weight_dtype = DType::kF32; break;
    }
  }
  PDCTL_RETURN_IF_ERROR(c.validate(file));
  return c;
}

}  // namespace pdctl::engine

#include "engine/model_writer.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/cpu/matmul.h"
#include "engine/gguf_writer.h"
#include "engine/safetensors.h"

namespace pdctl::engine {
namespace {

GgmlType ggml_type_of(DType d) {
  switch (d) {
    case DType::kF32: return GgmlType::kF32;
    case DType::kF16: return GgmlType::kF16;
    case DType::kBF16: return GgmlType::kBF16;
    case DType::kQ8_0: return GgmlType::kQ8_0;
  }
  return GgmlType::kF32;
}

// How a tensor's rows are reordered on the way out.
enum class Permute { kNone, kToAdjacent, kFromAdjacent };

// The source row of destination row r (q/k rows within each head of head_dim rows).
int64_t source_row(Permute p, int64_t r, int64_t hd) {
  const int64_t h = r / hd, i = r % hd;
  switch (p) {
    case Permute::kNone: return r;
    // llama.cpp's converter: pair (2j, 2j+1) of a head holds HF rows (j, j + hd/2).
    case Permute::kToAdjacent: return h * hd + (i % 2 == 0 ? i / 2 : hd / 2 + i / 2);
    case Permute::kFromAdjacent: return h * hd + (i < hd / 2 ? 2 * i : 2 * (i - hd / 2) + 1);
  }
  return r;
}

// A tensor to write: its rows (vectors are rows of one element when permuted) converted
// to `to` and reordered by `perm`.
struct OutTensor {
  const WeightRef* w;
  DType to;
  Permute perm;
  int64_t head_dim;

  int64_t rows() const { return w->shape.size() == 2 ? w->shape[0] : (perm == Permute::kNone ? 1 : w->shape[0]); }
  int64_t cols() const { return w->elements() / rows(); }
  uint64_t nbytes() const { return static_cast<uint64_t>(dtype_bytes(to, w->elements())); }

  Status emit(const std::function<void(const void*, size_t)>& out) const {
    const WeightView src{w->dtype, rows(), cols(), w->data};
    const int64_t n = cols();
    if (to == DType::kQ8_0 && n % kQ8_0BlockElems != 0) {
      return Status::unsupported(fmt::format("{}: rows of {} elements cannot be Q8_0", w->name, n));
    }
    std::vector<float> f(static_cast<size_t>(n));
    std::vector<uint8_t> row(static_cast<size_t>(dtype_bytes(to, n)));
    for (int64_t r = 0; r < rows(); ++r) {
      const int64_t s = source_row(perm, r, head_dim);
      if (to == w->dtype) {
        out(src.row(s), static_cast<size_t>(src.row_bytes()));
      } else {
        dequantize_row(src, s, f.data());
        encode_row(to, f.data(), n, row.data());
        out(row.data(), row.size());
      }
    }
    return Status::ok();
  }
};

void byte_vocab(const ModelConfig& c, GgufWriter& w) {
  if (c.vocab_size < 259) {
    w.add_string("tokenizer.ggml.model", "none");
    return;
  }
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  tokens.reserve(static_cast<size_t>(c.vocab_size));
  tokens = {"<unk>", "<s>", "</s>"};
  types = {2, 3, 3};  // unknown, control, control
  for (int b = 0; b < 256; ++b) {
    tokens.push_back(fmt::format("<0x{:02X}>", b));
    types.push_back(6);  // byte
  }
  for (int64_t i = 259; i < c.vocab_size; ++i) {
    tokens.push_back(fmt::format("[PAD{}]", i));
    types.push_back(1);
  }
  scores.assign(tokens.size(), 0.0f);
  w.add_string("tokenizer.ggml.model", "llama");
  w.add_string_array("tokenizer.ggml.tokens", tokens);
  w.add_f32_array("tokenizer.ggml.scores", scores);
  w.add_i32_array("tokenizer.ggml.token_type", types);
  w.add_u32("tokenizer.ggml.unknown_token_id", 0);
}

}  // namespace

void encode_row(DType dtype, const float* src, int64_t n, void* dst) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case DType::kF16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = fp32_to_fp16(src[i]);
      return;
    }
    case DType::kBF16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = fp32_to_bf16(src[i]);
      return;
    }
    case DType::kQ8_0: {
      auto* p = static_cast<uint8_t*>(dst);
      for (int64_t b = 0; b < n / kQ8_0BlockElems; ++b) {
        const float* x = src + b * kQ8_0BlockElems;
        float amax = 0;
        for (int j = 0; j < kQ8_0BlockElems; ++j) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        const uint16_t dh = fp32_to_fp16(d);
        uint8_t* blk = p + b * kQ8_0BlockBytes;
        std::memcpy(blk, &dh, 2);
        for (int j = 0; j < kQ8_0BlockElems; ++j) {
          blk[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::lround(x[j] * id)));
        }
      }
      return;
    }
  }
}

Status write_gguf_model(const LoadedModel& m, const std::string& path, const ModelWriteOptions& o) {
  const ModelConfig& c = m.config;
  const char* arch = nullptr;
  RopeStyle style = RopeStyle::kHalves;
  switch (c.arch) {
    case Arch::kLlama: case Arch::kMistral: arch = "llama"; style = RopeStyle::kAdjacentPairs; break;
    case Arch::kQwen2: arch = "qwen2"; break;
    case Arch::kQwen3: arch = "qwen3"; break;
  }
  if (c.attention_bias && c.arch != Arch::kQwen2 && c.arch != Arch::kLlama && c.arch != Arch::kMistral) {
    return Status::unsupported(fmt::format("{}: q/k/v biases cannot be written for {}", path, arch));
  }
  const std::string p = std::string(arch) + ".";
  const DType mat = o.dtype.value_or(c.weight_dtype);
  GgufWriter w;
  w.add_string("general.architecture", arch);
  w.add_string("general.name", m.source.empty() ? "pdctl" : std::filesystem::path(m.source).filename().string());
  uint32_t file_type = 0;
  switch (mat) {
    case DType::kF32: file_type = 0; break;
    case DType::kF16: file_type = 1; break;
    case DType::kQ8_0: file_type = 7; break;
    case DType::kBF16: file_type = 32; break;
  }
  w.add_u32("general.file_type", file_type);
  w.add_u32(p + "context_length", static_cast<uint32_t>(c.context_length));
  w.add_u32(p + "embedding_length", static_cast<uint32_t>(c.hidden_size));
  w.add_u32(p + "block_count", static_cast<uint32_t>(c.num_layers));
  w.add_u32(p + "feed_forward_length", static_cast<uint32_t>(c.intermediate_size));
  w.add_u32(p + "attention.head_count", static_cast<uint32_t>(c.num_heads));
  w.add_u32(p + "attention.head_count_kv", static_cast<uint32_t>(c.num_kv_heads));
  w.add_u32(p + "attention.key_length", static_cast<uint32_t>(c.head_dim));
  w.add_u32(p + "attention.value_length", static_cast<uint32_t>(c.head_dim));
  w.add_u32(p + "rope.dimension_count", static_cast<uint32_t>(c.head_dim));
  w.add_f32(p + "attention.layer_norm_rms_epsilon", static_cast<float>(c.rms_norm_eps));
  w.add_f32(p + "rope.freq_base", static_cast<float>(c.rope_theta));
  w.add_u32(p + "vocab_size", static_cast<uint32_t>(c.vocab_size));
  byte_vocab(c, w);
  if (c.bos_token_id >= 0) w.add_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(c.bos_token_id));
  if (!c.eos_token_ids.empty()) w.add_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(c.eos_token_ids[0]));

  std::vector<OutTensor> outs;  // stable storage for the emit callbacks
  outs.reserve(static_cast<size_t>(3 + c.num_layers * 14));
  const Permute qk = c.rope_style == style ? Permute::kNone
                     : style == RopeStyle::kAdjacentPairs ? Permute::kToAdjacent : Permute::kFromAdjacent;
  auto add = [&](WeightKind k, int layer) -> Status {
    const WeightRef& r = weight_slot(m.weights, k, layer);
    if (!r.present()) return Status::ok();
    if (k == WeightKind::kOutput && c.tie_word_embeddings) return Status::ok();
    const bool permuted = k == WeightKind::kWq || k == WeightKind::kWk || k == WeightKind::kBq || k == WeightKind::kBk;
    const DType to = is_matrix(k) ? mat : DType::kF32;
    outs.push_back(OutTensor{&r, to, permuted ? qk : Permute::kNone, c.head_dim});
    const OutTensor* t = &outs.back();
    std::vector<int64_t> dims(r.shape.rbegin(), r.shape.rend());
    w.add_tensor(gguf_tensor_name(k, layer), ggml_type_of(to), dims, t->nbytes(),
                 [t](const std::function<void(const void*, size_t)>& out) { return t->emit(out); });
    return Status::ok();
  };
  for (WeightKind k : kGlobalKinds) PDCTL_RETURN_IF_ERROR(add(k, 0));
  std::vector<uint8_t> freqs;
  if (!c.rope_freq_factors.empty()) {  // llama3 scaling, as llama.cpp's converter stores it
    freqs.resize(c.rope_freq_factors.size() * 4);
    std::memcpy(freqs.data(), c.rope_freq_factors.data(), freqs.size());
    w.add_tensor("rope_freqs.weight", GgmlType::kF32, {static_cast<int64_t>(c.rope_freq_factors.size())}, freqs);
  }
  for (int l = 0; l < c.num_layers; ++l) {
    for (WeightKind k : kLayerKinds) PDCTL_RETURN_IF_ERROR(add(k, l));
  }
  return w.write(path, o.gguf_version);
}

Status write_hf_model(const LoadedModel& m, const std::string& dir, const ModelWriteOptions& o) {
  const ModelConfig& c = m.config;
  if (o.dtype && *o.dtype == DType::kQ8_0) return Status::unsupported("safetensors has no Q8_0");
  if (!c.rope_freq_factors.empty() && !c.llama3_scaling) {
    return Status::unsupported(fmt::format("{}: RoPE frequency factors without their llama3 parameters", dir));
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::io(fmt::format("{}: {}", dir, ec.message()));
  nlohmann::ordered_json j;
  const char* archs[] = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"};
  const char* types[] = {"llama", "mistral", "qwen2", "qwen3"};
  const int ai = static_cast<int>(c.arch);
  j["architectures"] = {archs[ai]};
  j["model_type"] = types[ai];
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_layers;
  j["num_attention_heads"] = c.num_heads;
  j["num_key_value_heads"] = c.num_kv_heads;
  j["head_dim"] = c.head_dim;
  j["max_position_embeddings"] = c.context_length;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  if (c.llama3_scaling) {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", c.llama3_scaling->factor},
                         {"low_freq_factor", c.llama3_scaling->low_freq_factor},
                         {"high_freq_factor", c.llama3_scaling->high_freq_factor},
                         {"original_max_position_embeddings", c.llama3_scaling->original_max_position_embeddings}};
  }
  j["vocab_size"] = c.vocab_size;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["hidden_act"] = "silu";
  if (c.arch == Arch::kLlama || c.arch == Arch::kMistral) j["attention_bias"] = c.attention_bias;
  if (c.bos_token_id >= 0) j["bos_token_id"] = c.bos_token_id;
  if (!c.eos_token_ids.empty()) j["eos_token_id"] = c.eos_token_ids.size() == 1 ? nlohmann::ordered_json(c.eos_token_ids[0]) : nlohmann::ordered_json(c.eos_token_ids);
  const DType out_dtype = o.dtype.value_or(c.weight_dtype == DType::kQ8_0 ? DType::kF32 : c.weight_dtype);
  j["torch_dtype"] = out_dtype == DType::kF32 ? "float32" : out_dtype == DType::kF16 ? "float16" : "bfloat16";
  {
    std::ofstream f(std::filesystem::path(dir) / "config.json");
    f << j.dump(2);
    if (!f) return Status::io(fmt::format("{}/config.json: write failed", dir));
    nlohmann::ordered_json g;
    if (c.bos_token_id >= 0) g["bos_token_id"] = c.bos_token_id;
    if (!c.eos_token_ids.empty()) g["eos_token_id"] = j["eos_token_id"];
    std::ofstream gf(std::filesystem::path(dir) / "generation_config.json");
    gf << g.dump(2);
  }
  // Convert (and un-permute) into memory, then write: test- and tool-sized models only.
  std::vector<std::vector<uint8_t>> bufs;
  std::vector<SafetensorsEntry> entries;
  const Permute qk = c.rope_style == RopeStyle::kHalves ? Permute::kNone : Permute::kFromAdjacent;
  auto add = [&](WeightKind k, int layer) -> Status {
    const WeightRef& r = weight_slot(m.weights, k, layer);
    if (!r.present() || (k == WeightKind::kOutput && c.tie_word_embeddings)) return Status::ok();
    const bool permuted = k == WeightKind::kWq || k == WeightKind::kWk || k == WeightKind::kBq || k == WeightKind::kBk;
    DType to = o.dtype.value_or(r.dtype == DType::kQ8_0 ? DType::kF32 : r.dtype);
    OutTensor t{&r, to, permuted ? qk : Permute::kNone, c.head_dim};
    std::vector<uint8_t> b;
    b.reserve(t.nbytes());
    PDCTL_RETURN_IF_ERROR(t.emit([&](const void* p, size_t n) {
      b.insert(b.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
    }));
    bufs.push_back(std::move(b));
    entries.push_back(SafetensorsEntry{hf_tensor_name(k, layer), to, r.shape, bufs.back()});
    return Status::ok();
  };
  bufs.reserve(static_cast<size_t>(3 + c.num_layers * 14));
  for (WeightKind k : kGlobalKinds) PDCTL_RETURN_IF_ERROR(add(k, 0));
  for (int l = 0; l < c.num_layers; ++l) {
    for (WeightKind k : kLayerKinds) PDCTL_RETURN_IF_ERROR(add(k, l));
  }
  return write_safetensors((std::filesystem::path(dir) / "model.safetensors").string(), entries);
}

}  // namespace pdctl::engine

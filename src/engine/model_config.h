#pragma once
// The hyper-parameters of a Llama-family model, read from a Hugging Face config.json or
// from GGUF metadata, or given by a dummy preset. Everything the forward pass needs to
// know about the architecture is a field here, so the model code has no per-format cases.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/status.h"
#include "engine/dtype.h"

namespace pdctl::engine {

class GgufFile;

enum class Arch { kLlama, kMistral, kQwen2, kQwen3 };
const char* arch_name(Arch a);

// Which elements RoPE rotates together. GGUF `llama` files store q/k rows permuted so that
// pairs are adjacent (2i, 2i+1); HF checkpoints and GGUF `qwen2`/`qwen3` rotate halves
// (i, i + head_dim/2), as transformers' rotate_half. The loader records which one the
// weights use: rows are never permuted at load.
enum class RopeStyle { kAdjacentPairs, kHalves };

// Llama 3.1/3.2 `rope_scaling` of type "llama3".
struct Llama3RopeScaling {
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  Arch arch = Arch::kLlama;
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t intermediate_size = 0;
  int64_t vocab_size = 0;
  int64_t context_length = 0;     // max_position_embeddings
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  RopeStyle rope_style = RopeStyle::kHalves;
  // Per rotation pair, the divisor of its angle (llama3 scaling); empty: none.
  std::vector<float> rope_freq_factors;
  // The llama3 parameters the factors came from, when known (the HF writer needs them).
  std::optional<Llama3RopeScaling> llama3_scaling;
  bool attention_bias = false;    // q/k/v projections have biases (Qwen2)
  bool qk_norm = false;           // per-head RMSNorm of q and k before RoPE (Qwen3)
  bool tie_word_embeddings = false;
  int32_t bos_token_id = -1;
  std::vector<int32_t> eos_token_ids;
  DType weight_dtype = DType::kF32;  // the dtype of the matrices ("the model's dtype")

  int64_t q_dim() const { return num_heads * head_dim; }
  int64_t kv_dim() const { return num_kv_heads * head_dim; }
  // Parameters (embeddings counted once when tied).
  int64_t num_parameters() const;
  // Consistency of the numbers; `where` names the file for the message.
  Status validate(const std::string& where) const;
};

// llama3 scaling as a divisor per rotation pair (head_dim/2 values), the way llama.cpp's
// converter writes `rope_freqs.weight` and transformers scales inv_freq.
std::vector<float> llama3_rope_freq_factors(int64_t head_dim, double rope_theta, const Llama3RopeScaling& s);

// From a parsed config.json (+ generation_config.json, may be null) of `file`.
Result<ModelConfig> config_from_hf(const nlohmann::json& config, const nlohmann::json* generation_config,
                                   const std::string& file);
// From GGUF metadata (+ the `rope_freqs.weight` tensor if any).
Result<ModelConfig> config_from_gguf(const GgufFile& f);

}  // namespace pdctl::engine

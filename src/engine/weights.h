#pragma once
// The tensors of a Llama-family model as the loaders find them: views into memory-mapped
// files (or generated memory for dummy models), never copied. Binding checks every
// tensor's shape and dtype against the config, naming the file and tensor on error.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "engine/dtype.h"
#include "engine/model_config.h"

namespace pdctl::engine {

// A tensor used in place. `shape` is in PyTorch order: a matrix is [rows (out), cols (in)].
struct WeightRef {
  std::string name;               // "file: tensor", for messages
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;     // null: absent (optional tensors)
  bool present() const { return data != nullptr; }
  int64_t rows() const { return shape.empty() ? 0 : shape[0]; }
  int64_t cols() const { return shape.size() < 2 ? (shape.empty() ? 0 : shape[0]) : shape[1]; }
  int64_t elements() const;
  int64_t bytes() const { return dtype_bytes(dtype, elements()); }
};

struct LayerWeights {
  WeightRef attn_norm, wq, wk, wv, wo;
  WeightRef bq, bk, bv;           // attention_bias
  WeightRef q_norm, k_norm;       // qk_norm
  WeightRef ffn_norm, w_gate, w_up, w_down;
};

struct ModelWeights {
  WeightRef tok_embd, output_norm;
  WeightRef output;               // the embedding table when tied
  std::vector<LayerWeights> layers;
};

// What each tensor is, independent of the file format's names.
enum class WeightKind {
  kTokEmbd, kOutputNorm, kOutput,
  kAttnNorm, kWq, kWk, kWv, kWo, kBq, kBk, kBv, kQNorm, kKNorm,
  kFfnNorm, kGate, kUp, kDown,
};
inline constexpr WeightKind kGlobalKinds[] = {WeightKind::kTokEmbd, WeightKind::kOutputNorm, WeightKind::kOutput};
inline constexpr WeightKind kLayerKinds[] = {
    WeightKind::kAttnNorm, WeightKind::kWq, WeightKind::kWk, WeightKind::kWv, WeightKind::kWo,
    WeightKind::kBq, WeightKind::kBk, WeightKind::kBv, WeightKind::kQNorm, WeightKind::kKNorm,
    WeightKind::kFfnNorm, WeightKind::kGate, WeightKind::kUp, WeightKind::kDown};

std::string gguf_tensor_name(WeightKind k, int layer);
std::string hf_tensor_name(WeightKind k, int layer);
// The shape the config requires ([rows, cols] or [n]); empty when the config has no such
// tensor (a bias without attention_bias, the output of a tied model).
std::vector<int64_t> expected_shape(const ModelConfig& c, WeightKind k);
bool is_matrix(WeightKind k);
WeightRef& weight_slot(ModelWeights& w, WeightKind k, int layer);
const WeightRef& weight_slot(const ModelWeights& w, WeightKind k, int layer);

// A tensor as a file presents it, before binding.
struct RawTensor {
  std::string file;
  std::string name;
  std::optional<DType> dtype;      // nullopt: a dtype this engine does not compute with
  std::string dtype_name;          // as the file spells it, for messages
  std::vector<int64_t> shape;      // PyTorch order
  const void* data = nullptr;
};
using TensorLookup = std::function<const RawTensor*(const std::string& name)>;

// Fills `out` from `lookup` under `name_of`'s names, checking presence, dtype and shape.
Status bind_weights(const ModelConfig& c, const TensorLookup& lookup,
                    std::string (*name_of)(WeightKind, int), const std::string& source, ModelWeights& out);

// A loaded model: config, weight views, and whatever keeps their bytes alive.
struct LoadedModel {
  ModelConfig config;
  ModelWeights weights;
  std::string source;                           // path or preset name
  std::string format;                           // "gguf", "safetensors" or "dummy"
  std::vector<std::shared_ptr<const void>> storage;

  // Bytes of all weight tensors (embeddings once when tied).
  int64_t weight_bytes() const;
  // Bytes one decode step reads from the matrices: every layer's plus the output's.
  int64_t matmul_weight_bytes() const;
};

}  // namespace pdctl::engine

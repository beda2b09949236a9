#pragma once
// The Llama-family forward pass (Llama 2/3, Mistral, Qwen2, Qwen3), written once against
// the Backend interface. One call runs a ragged batch: any mix of prompt chunks and single
// decode tokens, each sequence reading and writing K/V through its own page table.
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "common/status.h"
#include "engine/backend.h"
#include "engine/weights.h"

namespace pdctl::engine {

// One sequence of a step.
struct SequenceInput {
  std::span<const int32_t> tokens;       // the new tokens (at least one)
  int32_t start_pos = 0;                 // tokens of this sequence already in the KV cache
  // Page ids in token order, allocated by the caller, covering start_pos + tokens.size()
  // tokens. The step writes K/V of the new tokens into them and reads the earlier ones.
  std::span<const int32_t> page_table;
  bool all_logits = false;               // logits of every new token (input logprobs), not only the last
};

// Logits of a step, one row of vocab_size floats per requested token.
struct ForwardOutput {
  int64_t vocab_size = 0;
  std::vector<float> logits;
  std::vector<int64_t> first_row;        // per sequence: its first row
  std::vector<int32_t> num_rows;         // per sequence: 1, or its token count with all_logits

  // The logits after the sequence's last new token (what the sampler takes).
  std::span<const float> last(size_t seq) const {
    return row_span(first_row[seq] + num_rows[seq] - 1);
  }
  // With all_logits: the logits after new token i (predicting token i + 1).
  std::span<const float> row(size_t seq, int32_t i) const { return row_span(first_row[seq] + i); }

 private:
  std::span<const float> row_span(int64_t r) const {
    return {logits.data() + r * vocab_size, static_cast<size_t>(vocab_size)};
  }
};

// Called on the engine thread right after layer `layer`'s K/V for the whole batch is in
// the pool (before that layer's attention): the PD prefill role starts sending the
// layer's blocks while the next layers compute.
using LayerObserver = std::function<void(int layer)>;

class LlamaModel {
 public:
  // Binds the weights to `backend` (which must outlive the model). The backend's KV pool
  // must be created before forward().
  static Result<std::unique_ptr<LlamaModel>> create(LoadedModel model, Backend& backend);

  LlamaModel(const LlamaModel&) = delete;
  LlamaModel& operator=(const LlamaModel&) = delete;

  const ModelConfig& config() const { return model_.config; }
  const LoadedModel& loaded() const { return model_; }
  Backend& backend() { return backend_; }

  // Runs one step. Inputs are checked first (token ids, positions against the context
  // length, page tables against the pool): a bad input is an error and nothing is written.
  Status forward(std::span<const SequenceInput> batch, ForwardOutput& out, const LayerObserver& observer = {});

 private:
  struct Layer {
    Tensor attn_norm, wq, wk, wv, wo, bq, bk, bv, q_norm, k_norm, ffn_norm, w_gate, w_up, w_down;
  };
  LlamaModel(LoadedModel model, Backend& backend) : model_(std::move(model)), backend_(backend) {}
  Status bind();
  Status check(std::span<const SequenceInput> batch) const;

  LoadedModel model_;
  Backend& backend_;
  Tensor tok_embd_, output_norm_, output_;
  std::vector<Layer> layers_;
  RopeConfig rope_;
  std::vector<int32_t> tokens_, rows_;
};

}  // namespace pdctl::engine

#pragma once
// Everything a worker needs to run a model, built from the worker flags: the loaded
// weights, a backend, the KV pool sized by the documented rule, and the model. The
// scheduler owns one ModelRunner and calls forward() on the engine thread.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/status.h"
#include "engine/backend.h"
#include "engine/llama_model.h"
#include "engine/model_loader.h"
#include "kv/kv_pool.h"

namespace pdctl::engine {

// When --max-running-requests is unset, the KV pool is capped at this many full contexts.
inline constexpr int kDefaultRequestsForKvSizing = 16;

struct EngineOptions {
  std::string model_path;
  std::string load_format = "auto";        // auto | gguf | safetensors | dummy
  std::string dtype = "auto";              // dummy weights' dtype (others keep the file's)
  std::string kv_cache_dtype = "auto";     // auto: the weights' dtype (f16 for Q8_0), f32 for F32 models
  std::string device = "cpu";
  int page_size = 16;
  std::optional<int64_t> max_total_tokens;
  double mem_fraction_static = 0.3;
  std::optional<int> context_length;       // overrides the model's
  std::optional<int> max_running_requests;
  int threads = 0;                         // 0: one per core
  uint64_t seed = 0;                       // dummy weights
};

// The KV dtype for a --kv-cache-dtype value and the model's weight dtype.
Result<kv::KvDType> resolve_kv_dtype(const std::string& flag, DType weight_dtype);

class ModelRunner {
 public:
  // `provider` supplies the KV pool's memory (default: anonymous memory).
  static Result<std::unique_ptr<ModelRunner>> create(const EngineOptions& opts,
                                                     const kv::KvMemoryProvider& provider = {});
  // From an already loaded model (tests, tools).
  static Result<std::unique_ptr<ModelRunner>> create(LoadedModel model, const EngineOptions& opts,
                                                     const kv::KvMemoryProvider& provider = {});

  const ModelConfig& config() const { return model_->config(); }
  LlamaModel& model() { return *model_; }
  Backend& backend() { return *backend_; }
  kv::KvPool& kv_pool() { return *backend_->kv_pool(); }
  int64_t max_total_tokens() const { return max_total_tokens_; }

  Status forward(std::span<const SequenceInput> batch, ForwardOutput& out, const LayerObserver& observer = {}) {
    return model_->forward(batch, out, observer);
  }

 private:
  ModelRunner() = default;
  std::unique_ptr<Backend> backend_;       // declared first: destroyed after the model
  std::unique_ptr<LlamaModel> model_;
  int64_t max_total_tokens_ = 0;
};

}  // namespace pdctl::engine

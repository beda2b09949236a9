#pragma once
// Loads a model for the engine: a GGUF file, a Hugging Face directory (config.json +
// model.safetensors or a sharded index), or a dummy model with random weights. Weights
// stay in the memory-mapped files. Every malformed input is an error naming the file and
// the tensor or key; nothing here aborts.
#include <cstdint>
#include <string>

#include "common/status.h"
#include "engine/weights.h"

namespace pdctl::engine {

struct LoadOptions {
  std::string model_path;            // GGUF file, HF directory, or (dummy) a preset name
  std::string load_format = "auto";  // auto | gguf | safetensors | dummy
  std::string dtype = "auto";        // dummy weights' dtype; other formats keep theirs
  uint64_t seed = 0;                 // dummy weights
};

Result<LoadedModel> load_model(const LoadOptions& opts);

Result<LoadedModel> load_gguf_model(const std::string& path);
Result<LoadedModel> load_hf_model(const std::string& dir);

}  // namespace pdctl::engine

#pragma once
// Dummy models (--load-format dummy, as SGLang's): the architecture from a preset name or
// from the config.json in --model-path, weights random from a fixed seed. They serve the
// benchmarks, the demo deployment and tests that need a model of a given shape.
//
// Presets (BOS 1, EOS 2, so that the byte-level fallback tokenizer fits them):
//   tiny      llama, hidden 256, 4 layers, 4 heads / 2 KV heads, FFN 768, vocab 512,
//             context 4096, tied embeddings; float32 unless --dtype says otherwise.
//   llama-1b  exactly the Llama-3.2-1B shape: hidden 2048, 16 layers, 32 heads / 8 KV heads,
//             FFN 8192, vocab 128256, context 131072, rope theta 500000 with llama3
//             scaling (factor 32), tied embeddings, 1.24B parameters; float16 by default.
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "engine/weights.h"

namespace pdctl::engine {

// The config and default weight dtype of a preset; kNotFound for an unknown name.
Result<ModelConfig> dummy_preset(const std::string& name);
std::vector<std::string> dummy_preset_names();

// `path_or_preset`: a directory with config.json, or a preset name. `dtype`: auto (the
// preset's, or config.json's torch_dtype) or a dtype name.
Result<LoadedModel> make_dummy_model(const std::string& path_or_preset, const std::string& dtype, uint64_t seed);

// Random weights for `c` in `dtype` (F32, F16, BF16 or Q8_0 matrices; vectors are F32 for
// Q8_0). The same (c, dtype, seed) always gives the same weights, whatever the thread count.
Result<LoadedModel> make_random_model(const ModelConfig& c, DType dtype, uint64_t seed);

}  // namespace pdctl::engine

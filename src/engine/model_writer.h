#pragma once
// Writes a loaded model back out: as a GGUF file (as llama.cpp's converter lays it out,
// q/k rows permuted for RoPE on adjacent pairs in `llama` files, so that llama.cpp loads
// it), or as a Hugging Face directory (config.json, generation_config.json,
// model.safetensors). For tests (loader round trips) and `pdctl bench --save-gguf`.
//
// The GGUF file carries a byte-level vocabulary (<unk>, <s>, </s>, the 256 bytes, then
// placeholders) matching the byte-level fallback tokenizer, since dummy models have none.
#include <cstdint>
#include <optional>
#include <string>

#include "common/status.h"
#include "engine/weights.h"

namespace pdctl::engine {

struct ModelWriteOptions {
  // Dtype of the matrices (GGUF; 1-D tensors stay F32 as llama.cpp's) or of every tensor
  // (safetensors: F32, F16 or BF16). Unset: as loaded.
  std::optional<DType> dtype;
  uint32_t gguf_version = 3;
};

Status write_gguf_model(const LoadedModel& m, const std::string& path, const ModelWriteOptions& o = {});
Status write_hf_model(const LoadedModel& m, const std::string& dir, const ModelWriteOptions& o = {});

// Converts n floats to a row of `dtype` (Q8_0: n a multiple of 32, blocks as ggml's).
void encode_row(DType dtype, const float* src, int64_t n, void* dst);

}  // namespace pdctl::engine

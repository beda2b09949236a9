#pragma once
// Element types of weights, activations and the KV cache, and scalar conversions.
#include <cstdint>
#include <cstring>
#include <string_view>

#include "common/status.h"

namespace pdctl::engine {

enum class DType : uint8_t { kF32, kF16, kBF16, kQ8_0 };

const char* dtype_name(DType t);
// "float32"/"f32"/"float", "float16"/"f16"/"half", "bfloat16"/"bf16", "q8_0".
Result<DType> parse_dtype(std::string_view name);

// Q8_0 (as ggml): blocks of 32 weights, one fp16 scale then 32 int8 values.
inline constexpr int kQ8_0BlockElems = 32;
inline constexpr int kQ8_0BlockBytes = 34;

// Bytes of `n` elements (n a multiple of 32 for Q8_0).
inline int64_t dtype_bytes(DType t, int64_t n) {
  switch (t) {
    case DType::kF32: return n * 4;
    case DType::kF16: return n * 2;
    case DType::kBF16: return n * 2;
    case DType::kQ8_0: return n / kQ8_0BlockElems * kQ8_0BlockBytes;
  }
  return 0;
}

// IEEE half <-> float, exact (round to nearest even), without relying on F16C.
float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);

inline float bf16_to_fp32(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// Round to nearest even; NaN stays NaN.
inline uint16_t fp32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fff + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}

}  // namespace pdctl::engine

#include "engine/dtype.h"

#include <string>

namespace pdctl::engine {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kF32: return "float32";
    case DType::kF16: return "float16";
    case DType::kBF16: return "bfloat16";
    case DType::kQ8_0: return "q8_0";
  }
  return "unknown";
}

Result<DType> parse_dtype(std::string_view n) {
  if (n == "float32" || n == "f32" || n == "float" || n == "F32") return DType::kF32;
  if (n == "float16" || n == "f16" || n == "half" || n == "F16") return DType::kF16;
  if (n == "bfloat16" || n == "bf16" || n == "BF16") return DType::kBF16;
  if (n == "q8_0" || n == "Q8_0") return DType::kQ8_0;
  return Status::invalid_argument("unknown dtype '" + std::string(n) + "'");
}

float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ff;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000 | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t fp32_to_fp16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  const uint32_t abs = x & 0x7fffffff;
  if (abs >= 0x7f800000) {  // Inf or NaN
    return sign | 0x7c00 | (abs > 0x7f800000 ? 0x200 : 0);
  }
  if (abs >= 0x477ff000) return sign | 0x7c00;  // rounds to >= 65520: overflow to Inf
  if (abs < 0x38800000) {                        // below the smallest normal half: subnormal
    if (abs < 0x33000000) return sign;           // rounds to zero
    const uint32_t e = abs >> 23;
    const uint32_t m = (abs & 0x7fffff) | 0x800000;
    const uint32_t shift = 126 - e;              // 14 + (113 - e) - 1 ... aligned to half's 2^-24 unit
    uint32_t half_m = m >> (shift - 0);
    // round to nearest even on the dropped bits
    const uint32_t rem = m & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (half_m & 1))) ++half_m;
    return sign | static_cast<uint16_t>(half_m);
  }
  uint32_t r = abs - 0x38000000;  // rebias exponent 127 -> 15
  r += 0xfff + ((r >> 13) & 1);   // round to nearest even
  return sign | static_cast<uint16_t>(r >> 13);
}

}  // namespace pdctl::engine

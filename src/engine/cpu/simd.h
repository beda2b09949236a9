#pragma once
// Small vector helpers of the CPU backend's non-matmul ops (attention, norms), written
// with AVX2 intrinsics (GCC 12's AVX-512 reductions trip -Wmaybe-uninitialized) where the build's -march has them and plain loops
// otherwise. (Weight products go through matmul(), never through these.)
#include <cstdint>
#include <cstring>

#if defined(__AVX2__) || defined(__F16C__)
#include <immintrin.h>
#endif

#include "engine/dtype.h"
#include "kv/kv_pool.h"

namespace pdctl::engine::simd {

inline float dot(const float* a, const float* b, int64_t n) {
  int64_t i = 0;
  float s = 0;
#if defined(__AVX2__) && defined(__FMA__)
  __m256 acc = _mm256_setzero_ps();
  for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
  __m128 lo = _mm256_castps256_ps128(acc), hi = _mm256_extractf128_ps(acc, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_hadd_ps(lo, lo);
  lo = _mm_hadd_ps(lo, lo);
  s = _mm_cvtss_f32(lo);
#endif
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// y += a * x
inline void axpy(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// Converts n KV elements of `dtype` to f32.
inline void kv_to_f32(kv::KvDType dtype, const void* src, float* dst, int64_t n) {
  switch (dtype) {
    case kv::KvDType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case kv::KvDType::kF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      int64_t i = 0;
#if defined(__F16C__) && defined(__AVX__)
      for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
      }
#endif
      for (; i < n; ++i) dst[i] = fp16_to_fp32(s[i]);
      return;
    }
    case kv::KvDType::kBF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(s[i]);
      return;
    }
  }
}

// Converts n f32 values to KV elements of `dtype`.
inline void f32_to_kv(kv::KvDType dtype, const float* src, void* dst, int64_t n) {
  switch (dtype) {
    case kv::KvDType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case kv::KvDType::kF16: {
      uint16_t* d = static_cast<uint16_t*>(dst);
      int64_t i = 0;
#if defined(__F16C__) && defined(__AVX__)
      for (; i + 8 <= n; i += 8) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
      }
#endif
      for (; i < n; ++i) d[i] = fp32_to_fp16(src[i]);
      return;
    }
    case kv::KvDType::kBF16: {
      uint16_t* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = fp32_to_bf16(src[i]);
      return;
    }
  }
}

}  // namespace pdctl::engine::simd

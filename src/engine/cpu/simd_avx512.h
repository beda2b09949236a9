#pragma once
// AVX-512 helpers shared by the matmul kernels: loading 16 consecutive weights of one row as
// floats, whatever the weight dtype, and a 16x16 float transpose. Only included where
// PDCTL_MATMUL_AVX512 is set, and first (before any other header that may pull in
// immintrin.h): GCC 12 warns about its own intrinsics' deliberately undefined values
// (_mm512_undefined_ps inside e.g. _mm512_cvtph_ps; GCC bug 105593, fixed in 13), and a
// diagnostic pragma only covers code that comes after it.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "engine/dtype.h"

namespace pdctl::engine::kernels::avx512 {

// W[row][k .. k+16) as floats; `row` points at the row's first byte. For Q8_0, k is a
// multiple of 16 (half a block) and the scale is applied here: the product d*q is rounded to
// float exactly as dequantize_row rounds it.
template <DType D>
inline __m512 load16(const uint8_t* row, int64_t k) {
  if constexpr (D == DType::kF32) {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + k);
  } else if constexpr (D == DType::kF16) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * k)));
  } else if constexpr (D == DType::kBF16) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * k));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  } else {
    const uint8_t* blk = row + (k / kQ8_0BlockElems) * kQ8_0BlockBytes;
    uint16_t d16;
    std::memcpy(&d16, blk, 2);
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2 + k % kQ8_0BlockElems));
    const __m512 qf = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q));
    return _mm512_mul_ps(qf, _mm512_set1_ps(_cvtsh_ss(d16)));
  }
}

// The first n (< 16) of W[row][k .. k+16), the rest zero; never reads past element k+n.
// Not for Q8_0, whose rows are whole blocks.
template <DType D>
inline __m512 load16_partial(const uint8_t* row, int64_t k, int n) {
  const __mmask16 m = static_cast<__mmask16>((1u << n) - 1);
  if constexpr (D == DType::kF32) {
    return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(row) + k);
  } else if constexpr (D == DType::kF16) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, row + 2 * k));
  } else {
    static_assert(D == DType::kBF16);
    const __m256i h = _mm256_maskz_loadu_epi16(m, row + 2 * k);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

inline __m512 load_x_partial(const float* p, int n) {
  return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
}

// Sum of the 16 lanes. (GCC 12's _mm512_reduce_add_ps trips -Wmaybe-uninitialized.)
inline float hsum(__m512 v) {
  v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0x4e));
  v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0xb1));
  v = _mm512_add_ps(v, _mm512_permute_ps(v, 0x4e));
  v = _mm512_add_ps(v, _mm512_permute_ps(v, 0xb1));
  return _mm512_cvtss_f32(v);
}

// In-place transpose of 16 rows of 16 floats.
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]);
    const __m512d c = _mm512_castps_pd(t[i + 2]), d = _mm512_castps_pd(t[i + 3]);
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  // r[i] for i = 4g + j now holds, in each 128-bit lane L, column 4L + j of rows 4g .. 4g+3.
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
    t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
    t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
    r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
    r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xdd);
  }
}

}  // namespace pdctl::engine::kernels::avx512

// AVX-512 dot-product kernels for few tokens (decode, small batches): each weight row is read
// from memory once per call, converted to floats in registers, and used against every token
// while it is still in L1/L2. Lanes run along k; each (token, row) pair ends with a horizontal
// sum. With one token this is a GEMV bounded by memory bandwidth, so what matters is keeping
// several rows streaming at once; with more tokens each weight vector feeds several FMAs.
#include "engine/cpu/matmul_kernels.h"

#if PDCTL_MATMUL_AVX512
#include "engine/cpu/simd_avx512.h"  // first: see there

#include <cstring>
#include <type_traits>


namespace pdctl::engine::kernels {
namespace {

using avx512::load16;
using avx512::load16_partial;

// TB tokens x RB rows of dot products over the whole of k. TB*RB accumulators plus RB weight
// vectors and one activation vector must fit the 32 vector registers.
template <DType D, int TB, int RB>
inline void dot_tile(const uint8_t* w0, int64_t row_bytes, const float* x, int64_t xs,
                     int64_t K, float* y, int64_t ys) {
  __m512 acc[TB][RB];
  for (int i = 0; i < TB; ++i)
    for (int j = 0; j < RB; ++j) acc[i][j] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    __m512 wv[RB];
    for (int j = 0; j < RB; ++j) wv[j] = load16<D>(w0 + j * row_bytes, k);
    for (int i = 0; i < TB; ++i) {
      const __m512 xv = _mm512_loadu_ps(x + i * xs + k);
      for (int j = 0; j < RB; ++j) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  if constexpr (D != DType::kQ8_0) {
    if (k < K) {
      const int n = static_cast<int>(K - k);
      __m512 wv[RB];
      for (int j = 0; j < RB; ++j) wv[j] = load16_partial<D>(w0 + j * row_bytes, k, n);
      for (int i = 0; i < TB; ++i) {
        const __m512 xv = avx512::load_x_partial(x + i * xs + k, n);
        for (int j = 0; j < RB; ++j) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
      }
    }
  }
  for (int i = 0; i < TB; ++i)
    for (int j = 0; j < RB; ++j) y[i * ys + j] = avx512::hsum(acc[i][j]);
}

// The same for Q8_0, a block of 32 at a time: the block's dot product with x is formed from
// the int8 values converted to float, and scaled once (d * sum x q, rather than sum x (d q)):
// one scale conversion and one multiply per block instead of per 16 weights.
template <int TB, int RB>
inline void dot_tile_q8(const uint8_t* w0, int64_t row_bytes, const float* x, int64_t xs, int64_t K,
                        float* y, int64_t ys) {
  __m512 acc[TB][RB];
  for (int i = 0; i < TB; ++i)
    for (int j = 0; j < RB; ++j) acc[i][j] = _mm512_setzero_ps();
  for (int64_t b = 0; b < K / kQ8_0BlockElems; ++b) {
    __m512 lo[RB], hi[RB], d[RB];
    for (int j = 0; j < RB; ++j) {
      const uint8_t* blk = w0 + j * row_bytes + b * kQ8_0BlockBytes;
      uint16_t d16;
      std::memcpy(&d16, blk, 2);
      d[j] = _mm512_set1_ps(_cvtsh_ss(d16));
      lo[j] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2))));
      hi[j] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 18))));
    }
    for (int i = 0; i < TB; ++i) {
      const __m512 xl = _mm512_loadu_ps(x + i * xs + b * kQ8_0BlockElems);
      const __m512 xh = _mm512_loadu_ps(x + i * xs + b * kQ8_0BlockElems + 16);
      for (int j = 0; j < RB; ++j)
        acc[i][j] = _mm512_fmadd_ps(_mm512_fmadd_ps(xh, hi[j], _mm512_mul_ps(xl, lo[j])), d[j], acc[i][j]);
    }
  }
  for (int i = 0; i < TB; ++i)
    for (int j = 0; j < RB; ++j) y[i * ys + j] = avx512::hsum(acc[i][j]);
}

// Rows in blocks of RB; inside a block, tokens in groups of TB (then the remainder with
// smaller tiles), so the block's weights come from memory once and from cache afterwards.
template <DType D, int TB, int RB>
void dot_rows_block(const MatmulArgs& a, int64_t r0, int64_t r1) {
  const WeightView& w = *a.w;
  const int64_t rb = w.row_bytes();
  const int64_t T = a.n_tokens;
  auto tokens = [&](const uint8_t* wr, int64_t r, auto rows_c) {
    constexpr int R = decltype(rows_c)::value;
    int64_t t = 0;
    if constexpr (D == DType::kQ8_0) {
      for (; t + TB <= T; t += TB)
        dot_tile_q8<TB, R>(wr, rb, a.x + t * a.x_stride, a.x_stride, w.cols, a.y + t * a.y_stride + r, a.y_stride);
      for (; t < T; ++t)
        dot_tile_q8<1, R>(wr, rb, a.x + t * a.x_stride, a.x_stride, w.cols, a.y + t * a.y_stride + r, a.y_stride);
    } else {
      for (; t + TB <= T; t += TB)
        dot_tile<D, TB, R>(wr, rb, a.x + t * a.x_stride, a.x_stride, w.cols, a.y + t * a.y_stride + r, a.y_stride);
      for (; t < T; ++t)
        dot_tile<D, 1, R>(wr, rb, a.x + t * a.x_stride, a.x_stride, w.cols, a.y + t * a.y_stride + r, a.y_stride);
    }
  };
  int64_t r = r0;
  for (; r + RB <= r1; r += RB) tokens(w.row(r), r, std::integral_constant<int, RB>{});
  for (; r < r1; ++r) tokens(w.row(r), r, std::integral_constant<int, 1>{});
}

template <DType D>
void dot_rows_dtype(const MatmulArgs& a, int64_t r0, int64_t r1) {
  if constexpr (D == DType::kQ8_0) {
    // Three vectors per row (two halves and the scale) instead of one. One token reaches only
    // ~10 GB/s from memory although the same loop does 23 GB/s from L2: 4, 6 or 8 rows,
    // other int8 conversions and software prefetch measured no better (left for a VNNI
    // kernel with int8 activations).
    switch (a.n_tokens) {
      case 1: return dot_rows_block<D, 1, 6>(a, r0, r1);
      case 2:
      case 3: return dot_rows_block<D, 2, 4>(a, r0, r1);
      default: return dot_rows_block<D, 4, 3>(a, r0, r1);
    }
  }
  // Tile shapes, measured on Zen 4 with weights streaming from memory: one token reads 8 rows
  // at once (8 concurrent streams: +25% over 4, 12 or 16 no better, software prefetch
  // slower); from 4 tokens on, 4 tokens x 6 rows (24 accumulators + 6 weight vectors + 1)
  // beat 4 x 4 by ~40%.
  switch (a.n_tokens) {
    case 1:
      // One row at a time where x stays in L1 (up to 16 KiB of it): the weights are then one
      // sequential stream, which the prefetchers follow at the full read bandwidth (Zen 4,
      // 2 MiB pages: 31 GB/s vs 22 with 8 rows at once). Rows 4 or 16 KiB apart map to the
      // same L1 sets, so several rows at once evict one another. A longer x does not fit
      // beside the stream, and 8 rows that share each x load are faster there (23 vs 13).
      if (a.w->cols * static_cast<int64_t>(sizeof(float)) <= 16 * 1024) return dot_rows_block<D, 1, 1>(a, r0, r1);
      return dot_rows_block<D, 1, 8>(a, r0, r1);
    case 2: return dot_rows_block<D, 2, 8>(a, r0, r1);
    case 3: return dot_rows_block<D, 3, 6>(a, r0, r1);
    default: return dot_rows_block<D, 4, 6>(a, r0, r1);
  }
}

}  // namespace

void dot_rows_avx512(const MatmulArgs& a, int64_t r0, int64_t r1) {
  switch (a.w->dtype) {
    case DType::kF32: return dot_rows_dtype<DType::kF32>(a, r0, r1);
    case DType::kF16: return dot_rows_dtype<DType::kF16>(a, r0, r1);
    case DType::kBF16: return dot_rows_dtype<DType::kBF16>(a, r0, r1);
    case DType::kQ8_0: return dot_rows_dtype<DType::kQ8_0>(a, r0, r1);
  }
}

}  // namespace pdctl::engine::kernels

#endif  // PDCTL_MATMUL_AVX512

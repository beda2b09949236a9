// The GEMM for BF16 weights with vdpbf16ps (AVX512_BF16): each instruction multiplies 16
// rows x a pair of k and adds both products into f32 lanes, twice the work of an FP32 FMA at
// the same throughput on Zen 4 (measured: 233 vs 116 GFLOP/s per core).
//
// The price is accuracy: activations are rounded to BF16 (relative error up to 2^-9 each;
// the weights are exact, products and sums are f32), so a result can be off by up to ~2^-9
// of sum_k |x_k w_k| where the F32-converting GEMM is off by ~2^-20. That is the precision
// the BF16 model's own weights have, and what llama.cpp does for BF16; matmul() uses it for
// BF16 weights from kGemmMinTokens tokens on (prefill), Path::kGemm keeps the exact one.
//
// Same blocking as matmul_gemm_avx512.cpp, in units of k pairs: a pair of BF16 weights of one
// row is one 32-bit word, so packing is the same 16x16 transpose of 32-bit words, with no
// conversion at all.
#include "engine/cpu/matmul_kernels.h"

#if PDCTL_MATMUL_AVX512_BF16
#include "engine/cpu/simd_avx512.h"  // first: see there

#include <algorithm>
#include <array>
#include <cstdlib>
#include <memory>
#include <utility>

namespace pdctl::engine::kernels {
namespace {

constexpr int kNR = 32;   // rows per micro-panel
constexpr int kMR = 12;   // tokens per micro-kernel (24 accumulators)
constexpr int kKP = 256;  // k pairs per packed tile (512 k): the FP32 GEMM's tile in bytes
constexpr int kNC = 256;  // rows per packed tile
static_assert(kGemmRowChunk % kNR == 0);

struct FreeDeleter {
  void operator()(uint32_t* p) const { std::free(p); }
};

uint32_t* weight_tile() {
  thread_local std::unique_ptr<uint32_t, FreeDeleter> wp{
      static_cast<uint32_t*>(std::aligned_alloc(64, sizeof(uint32_t) * kNC * kKP))};
  return wp.get();
}

// 32 BF16 of a row from element k, of which the first n (<= 32) are real, as 16 words.
inline __m512 load_pairs(const uint8_t* row, int64_t k, int n) {
  const uint8_t* p = row + 2 * k;
  if (n >= 32) return _mm512_castsi512_ps(_mm512_loadu_si512(p));
  const __mmask32 m = static_cast<__mmask32>((uint64_t{1} << n) - 1);
  return _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(m, p));
}

// Packs W[r0 .. r0+nr)[k0 .. k0+kc) into wp[pair][32]: word (p, j) holds row j's weights
// k0+2p and k0+2p+1. Rows past nr and k past kc are zero.
void pack_panel(const WeightView& w, int64_t r0, int nr, int64_t k0, int kc, uint32_t* wp) {
  const int64_t rb = w.row_bytes();
  for (int g = 0; g < kNR / 16; ++g) {
    const int rows = std::clamp(nr - g * 16, 0, 16);
    for (int kk = 0; kk < kc; kk += 32) {
      __m512 v[16];
      for (int j = 0; j < 16; ++j)
        v[j] = j < rows ? load_pairs(static_cast<const uint8_t*>(w.data) + (r0 + g * 16 + j) * rb, k0 + kk, kc - kk)
                        : _mm512_setzero_ps();
      avx512::transpose16(v);
      for (int j = 0; j < 16; ++j) _mm512_store_ps(reinterpret_cast<float*>(wp + (kk / 2 + j) * kNR + g * 16), v[j]);
    }
  }
}

// x[k0 .. k0+kc) rounded to BF16 (nearest even), as kc/2 (rounded up) words, zero-padded.
void pack_x_row(const float* x, int kc, uint32_t* out) {
  int k = 0;
  for (; k + 32 <= kc; k += 32) {
    const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + k + 16), _mm512_loadu_ps(x + k));
    _mm512_storeu_si512(out + k / 2, reinterpret_cast<const __m512i&>(b));
  }
  if (k < kc) {
    const int n = kc - k;
    const __m512 lo = avx512::load_x_partial(x + k, std::min(n, 16));
    const __m512 hi = n > 16 ? avx512::load_x_partial(x + k + 16, n - 16) : _mm512_setzero_ps();
    const __m512bh b = _mm512_cvtne2ps_pbh(hi, lo);
    _mm512_mask_storeu_epi32(out + k / 2, static_cast<__mmask16>((1u << ((n + 1) / 2)) - 1),
                             reinterpret_cast<const __m512i&>(b));
  }
}

// y[M][32] (+)= x pairs xb[M][np] . wp[np][32]; xb rows are kKP words apart.
template <int M>
inline void micro_kernel(const uint32_t* xb, const uint32_t* wp, int np, float* y, int64_t ys,
                         __mmask16 m0, __mmask16 m1, bool accumulate) {
  __m512 c0[M], c1[M];
  for (int i = 0; i < M; ++i) c0[i] = c1[i] = _mm512_setzero_ps();
  if (accumulate)
    for (int i = 0; i < M; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(y + i * ys), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(y + i * ys + 16), _MM_HINT_T0);
    }
#pragma GCC unroll 2
  for (int p = 0; p < np; ++p) {
    const __m512i w0 = _mm512_load_si512(wp + p * kNR);
    const __m512i w1 = _mm512_load_si512(wp + p * kNR + 16);
    for (int i = 0; i < M; ++i) {
      const __m512i xv = _mm512_set1_epi32(static_cast<int>(xb[i * kKP + p]));
      c0[i] = _mm512_dpbf16_ps(c0[i], reinterpret_cast<const __m512bh&>(w0), reinterpret_cast<const __m512bh&>(xv));
      c1[i] = _mm512_dpbf16_ps(c1[i], reinterpret_cast<const __m512bh&>(w1), reinterpret_cast<const __m512bh&>(xv));
    }
  }
  for (int i = 0; i < M; ++i) {
    float* yi = y + i * ys;
    if (accumulate) {
      c0[i] = _mm512_add_ps(c0[i], _mm512_maskz_loadu_ps(m0, yi));
      c1[i] = _mm512_add_ps(c1[i], _mm512_maskz_loadu_ps(m1, yi + 16));
    }
    _mm512_mask_storeu_ps(yi, m0, c0[i]);
    _mm512_mask_storeu_ps(yi + 16, m1, c1[i]);
  }
}

using MicroKernel = void (*)(const uint32_t*, const uint32_t*, int, float*, int64_t, __mmask16, __mmask16, bool);

template <int... Ms>
constexpr auto make_kernels(std::integer_sequence<int, Ms...>) {
  return std::array<MicroKernel, sizeof...(Ms)>{&micro_kernel<Ms + 1>...};
}
constexpr auto kMicroKernels = make_kernels(std::make_integer_sequence<int, kMR>{});

__mmask16 lane_mask(int n) {
  return n >= 16 ? static_cast<__mmask16>(0xffff) : n <= 0 ? 0 : static_cast<__mmask16>((1u << n) - 1);
}

constexpr int kKC = 2 * kKP;

int64_t k_blocks(const MatmulArgs& a) { return (a.w->cols + kKC - 1) / kKC; }

// Activations as [k block][token][kKP] words of BF16 pairs.
int64_t packed_x_bytes(const MatmulArgs& a) { return k_blocks(a) * a.n_tokens * kKP * sizeof(uint32_t); }

void pack_x(const MatmulArgs& a, void* out, int64_t t0, int64_t t1) {
  uint32_t* xp = static_cast<uint32_t*>(out);
  for (int64_t kb = 0; kb < k_blocks(a); ++kb) {
    const int kc = static_cast<int>(std::min<int64_t>(kKC, a.w->cols - kb * kKC));
    for (int64_t t = t0; t < t1; ++t)
      pack_x_row(a.x + t * a.x_stride + kb * kKC, kc, xp + (kb * a.n_tokens + t) * kKP);
  }
}

void rows(const MatmulArgs& a, const void* packed_x, int64_t r0, int64_t r1) {
  const WeightView& w = *a.w;
  const int64_t K = w.cols;
  const int64_t T = a.n_tokens;
  const uint32_t* xp = static_cast<const uint32_t*>(packed_x);
  uint32_t* wp = weight_tile();
  for (int64_t rb = r0; rb < r1; rb += kNC) {
    const int nc = static_cast<int>(std::min<int64_t>(kNC, r1 - rb));
    const int panels = (nc + kNR - 1) / kNR;
    for (int64_t kb = 0; kb < k_blocks(a); ++kb) {
      const int64_t k0 = kb * kKC;
      const int kc = static_cast<int>(std::min<int64_t>(kKC, K - k0));
      const int np = (kc + 1) / 2;
      for (int p = 0; p < panels; ++p)
        pack_panel(w, rb + p * kNR, std::min(kNR, nc - p * kNR), k0, kc, wp + p * kKP * kNR);
      for (int64_t t0 = 0; t0 < T; t0 += kMR) {
        const int m = static_cast<int>(std::min<int64_t>(kMR, T - t0));
        const uint32_t* xb = xp + (kb * T + t0) * kKP;
        for (int p = 0; p < panels; ++p) {
          const int cols = nc - p * kNR;
          kMicroKernels[m - 1](xb, wp + p * kKP * kNR, np, a.y + t0 * a.y_stride + rb + p * kNR, a.y_stride,
                               lane_mask(cols), lane_mask(cols - 16), k0 > 0);
        }
      }
    }
  }
}

}  // namespace

GemmKernel gemm_bf16dot_avx512() { return {&packed_x_bytes, &pack_x, &rows}; }

}  // namespace pdctl::engine::kernels

#endif  // PDCTL_MATMUL_AVX512_BF16

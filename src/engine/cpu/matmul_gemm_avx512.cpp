// AVX-512 blocked GEMM for many tokens (prefill): the compute-bound case.
//
// Weights are converted (F16/BF16/Q8_0 -> F32, F32 copied) a tile at a time into a packed
// panel of kNC rows x kKC columns that stays in L2, laid out k-major in groups of 32 rows, so
// that the micro-kernel loads 32 consecutive outputs' weights for one k as two vectors. The
// micro-kernel keeps a kMR-token x 32-row block of y in 24 registers and, for each k,
// broadcasts one activation per token: kMR*2 FMAs per 2 vector loads and kMR broadcasts.
// Each weight is converted once per call and reused by every token; activations are copied
// per (token block, k block) into a small buffer with a compile-time row stride.
#include "engine/cpu/matmul_kernels.h"

#if PDCTL_MATMUL_AVX512
#include "engine/cpu/simd_avx512.h"  // first: see there

#include <algorithm>
#include <array>
#include <cstdlib>
#include <memory>
#include <utility>


namespace pdctl::engine::kernels {
namespace {

// Sizes measured on Zen 4 (1 MiB L2 per core) at 512 tokens x 2048 x 2048, F16 (bench_kernels
// and a micro-kernel loop): the micro-kernel alone reaches the FMA peak even with its weight
// panel in L2, so the outer sizes only trade packing and y traffic against L2 capacity.
// KC 512 / NC 256 (a 512 KiB tile) beat 256/128, 256/256, 128/x and 1024/128 by 3-15%; 14
// tokens (28 accumulators) was no faster than 12.
#ifndef PDCTL_GEMM_MR  // overridable only to rerun that tuning
#define PDCTL_GEMM_MR 12
#define PDCTL_GEMM_KC 512
#define PDCTL_GEMM_NC 256
#endif
constexpr int kNR = 32;             // rows per micro-panel: two vectors of outputs
constexpr int kMR = PDCTL_GEMM_MR;  // tokens per micro-kernel: 12 x 2 = 24 accumulators
constexpr int kKC = PDCTL_GEMM_KC;  // k per packed tile: a 32-row micro-panel is 64 KiB (L2)
constexpr int kNC = PDCTL_GEMM_NC;  // rows per packed tile: kNC x kKC floats = 512 KiB of L2
static_assert(kGemmRowChunk % kNR == 0);
static_assert(kKC % kQ8_0BlockElems == 0, "k blocks must hold whole Q8_0 blocks");

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};

// Per-thread scratch, 64-byte aligned: the packed weight tile.
float* weight_tile() {
  thread_local std::unique_ptr<float, FreeDeleter> wp{
      static_cast<float*>(std::aligned_alloc(64, sizeof(float) * kNC * kKC))};
  return wp.get();
}

// Packs W[r0 .. r0+nr)[k0 .. k0+kc) (nr <= 32) into wp[k][32], k < kc rounded up to 16;
// rows past nr and columns past kc are zero.
template <DType D>
void pack_panel(const WeightView& w, int64_t r0, int nr, int64_t k0, int kc, float* wp) {
  const int64_t rb = w.row_bytes();
  for (int g = 0; g < kNR / 16; ++g) {
    const int rows = std::clamp(nr - g * 16, 0, 16);
    for (int kk = 0; kk < kc; kk += 16) {
      const int n = std::min(16, kc - kk);
      __m512 v[16];
      for (int j = 0; j < 16; ++j) {
        if (j >= rows) {
          v[j] = _mm512_setzero_ps();
        } else if constexpr (D == DType::kQ8_0) {
          v[j] = avx512::load16<D>(w.row(r0 + g * 16 + j), k0 + kk);  // kc is whole blocks
        } else {
          const uint8_t* row = static_cast<const uint8_t*>(w.data) + (r0 + g * 16 + j) * rb;
          v[j] = n == 16 ? avx512::load16<D>(row, k0 + kk) : avx512::load16_partial<D>(row, k0 + kk, n);
        }
      }
      avx512::transpose16(v);
      for (int j = 0; j < 16; ++j) _mm512_store_ps(wp + (kk + j) * kNR + g * 16, v[j]);
    }
  }
}

// y[M][32] (+)= xb[M][kc] * wp[kc][32]; xb rows are kKC floats apart. Columns are masked by
// m0/m1 at the right edge of W.
template <int M>
inline void micro_kernel(const float* xb, const float* wp, int kc, float* y, int64_t ys,
                         __mmask16 m0, __mmask16 m1, bool accumulate) {
  __m512 c0[M], c1[M];
  for (int i = 0; i < M; ++i) c0[i] = c1[i] = _mm512_setzero_ps();
  // The y block is revisited once per k block and has usually left L1 by then: fetch it
  // while the k loop runs (measured +1-3%).
  if (accumulate)
    for (int i = 0; i < M; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(y + i * ys), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(y + i * ys + 16), _MM_HINT_T0);
    }
#pragma GCC unroll 2
  for (int k = 0; k < kc; ++k) {
    const __m512 w0 = _mm512_load_ps(wp + k * kNR);
    const __m512 w1 = _mm512_load_ps(wp + k * kNR + 16);
    for (int i = 0; i < M; ++i) {
      const __m512 xv = _mm512_set1_ps(xb[i * kKC + k]);
      c0[i] = _mm512_fmadd_ps(xv, w0, c0[i]);
      c1[i] = _mm512_fmadd_ps(xv, w1, c1[i]);
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

using MicroKernel = void (*)(const float*, const float*, int, float*, int64_t, __mmask16, __mmask16, bool);

template <int... Ms>
constexpr auto make_kernels(std::integer_sequence<int, Ms...>) {
  return std::array<MicroKernel, sizeof...(Ms)>{&micro_kernel<Ms + 1>...};
}
// kMicroKernels[m - 1] handles m tokens.
constexpr auto kMicroKernels = make_kernels(std::make_integer_sequence<int, kMR>{});

__mmask16 lane_mask(int n) {
  return n >= 16 ? static_cast<__mmask16>(0xffff) : n <= 0 ? 0 : static_cast<__mmask16>((1u << n) - 1);
}

int64_t k_blocks(const MatmulArgs& a) { return (a.w->cols + kKC - 1) / kKC; }

// The activations as [k block][token][kKC] floats: what one (row block, k block) step needs is
// then one sequential stream, which the hardware prefetchers follow (copying short row
// pieces per step instead cost 5-15% at 512 tokens).
int64_t packed_x_bytes(const MatmulArgs& a) { return k_blocks(a) * a.n_tokens * kKC * sizeof(float); }

void pack_x(const MatmulArgs& a, void* out, int64_t t0, int64_t t1) {
  float* xp = static_cast<float*>(out);
  const int64_t K = a.w->cols;
  for (int64_t kb = 0; kb < k_blocks(a); ++kb) {
    const int64_t k0 = kb * kKC;
    const int kc = static_cast<int>(std::min<int64_t>(kKC, K - k0));
    for (int64_t t = t0; t < t1; ++t) std::copy_n(a.x + t * a.x_stride + k0, kc, xp + (kb * a.n_tokens + t) * kKC);
  }
}

template <DType D>
void rows_dtype(const MatmulArgs& a, const void* packed_x, int64_t r0, int64_t r1) {
  const WeightView& w = *a.w;
  const int64_t K = w.cols;
  const int64_t T = a.n_tokens;
  const float* xp = static_cast<const float*>(packed_x);
  float* wp = weight_tile();
  for (int64_t rb = r0; rb < r1; rb += kNC) {
    const int nc = static_cast<int>(std::min<int64_t>(kNC, r1 - rb));
    const int panels = (nc + kNR - 1) / kNR;
    for (int64_t kb = 0; kb < k_blocks(a); ++kb) {
      const int64_t k0 = kb * kKC;
      const int kc = static_cast<int>(std::min<int64_t>(kKC, K - k0));
      for (int p = 0; p < panels; ++p)
        pack_panel<D>(w, rb + p * kNR, std::min(kNR, nc - p * kNR), k0, kc, wp + p * kKC * kNR);
      for (int64_t t0 = 0; t0 < T; t0 += kMR) {
        const int m = static_cast<int>(std::min<int64_t>(kMR, T - t0));
        const float* xb = xp + (kb * T + t0) * kKC;
        const MicroKernel kernel = kMicroKernels[m - 1];
        for (int p = 0; p < panels; ++p) {
          const int cols = nc - p * kNR;
          kernel(xb, wp + p * kKC * kNR, kc, a.y + t0 * a.y_stride + rb + p * kNR, a.y_stride,
                 lane_mask(cols), lane_mask(cols - 16), k0 > 0);
        }
      }
    }
  }
}

void rows(const MatmulArgs& a, const void* packed_x, int64_t r0, int64_t r1) {
  switch (a.w->dtype) {
    case DType::kF32: return rows_dtype<DType::kF32>(a, packed_x, r0, r1);
    case DType::kF16: return rows_dtype<DType::kF16>(a, packed_x, r0, r1);
    case DType::kBF16: return rows_dtype<DType::kBF16>(a, packed_x, r0, r1);
    case DType::kQ8_0: return rows_dtype<DType::kQ8_0>(a, packed_x, r0, r1);
  }
}

}  // namespace

GemmKernel gemm_avx512() { return {&packed_x_bytes, &pack_x, &rows}; }

}  // namespace pdctl::engine::kernels

#endif  // PDCTL_MATMUL_AVX512

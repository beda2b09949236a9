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

constexpr int kNR = 32;   // rows per micro-panel: two vectors of outputs
constexpr int kMR = 12;   // tokens per micro-kernel: 12 x 2 = 24 accumulators of 32 registers
constexpr int kKC = 256;  // k per packed tile: a 32-row micro-panel is 32 KiB
constexpr int kNC = 128;  // rows per packed tile: 128 KiB of L2; also bounds the y block
static_assert(kGemmRowAlign == kNR);

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};

// Per-thread scratch, 64-byte aligned: the packed weight tile and the activation block.
struct Scratch {
  std::unique_ptr<float, FreeDeleter> wp{
      static_cast<float*>(std::aligned_alloc(64, sizeof(float) * kNC * kKC))};
  std::unique_ptr<float, FreeDeleter> xb{
      static_cast<float*>(std::aligned_alloc(64, sizeof(float) * kMR * kKC))};
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
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

template <DType D>
void gemm_rows_dtype(const MatmulArgs& a, int64_t r0, int64_t r1) {
  const WeightView& w = *a.w;
  const int64_t K = w.cols;
  const int64_t T = a.n_tokens;
  Scratch& s = scratch();
  float* wp = s.wp.get();
  float* xb = s.xb.get();
  for (int64_t rb = r0; rb < r1; rb += kNC) {
    const int nc = static_cast<int>(std::min<int64_t>(kNC, r1 - rb));
    const int panels = (nc + kNR - 1) / kNR;
    for (int64_t k0 = 0; k0 < K; k0 += kKC) {
      const int kc = static_cast<int>(std::min<int64_t>(kKC, K - k0));
      for (int p = 0; p < panels; ++p)
        pack_panel<D>(w, rb + p * kNR, std::min(kNR, nc - p * kNR), k0, kc, wp + p * kKC * kNR);
      for (int64_t t0 = 0; t0 < T; t0 += kMR) {
        const int m = static_cast<int>(std::min<int64_t>(kMR, T - t0));
        for (int i = 0; i < m; ++i)
          std::copy_n(a.x + (t0 + i) * a.x_stride + k0, kc, xb + i * kKC);
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

}  // namespace

void gemm_rows_avx512(const MatmulArgs& a, int64_t r0, int64_t r1) {
  switch (a.w->dtype) {
    case DType::kF32: return gemm_rows_dtype<DType::kF32>(a, r0, r1);
    case DType::kF16: return gemm_rows_dtype<DType::kF16>(a, r0, r1);
    case DType::kBF16: return gemm_rows_dtype<DType::kBF16>(a, r0, r1);
    case DType::kQ8_0: return gemm_rows_dtype<DType::kQ8_0>(a, r0, r1);
  }
}

}  // namespace pdctl::engine::kernels

#endif  // PDCTL_MATMUL_AVX512

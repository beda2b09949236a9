#pragma once
// Internal to matmul: the kernels behind matmul() and how it picks one. Tests and the kernel
// benchmark include this to run each path on its own; the engine uses matmul.h only.
//
// Every kernel computes y[t][r] for all tokens and for the rows [r0, r1) of W, so that the
// dispatcher can split rows between threads (each thread then streams its own part of W).
#include <cstdint>
#include <cstring>

#include "engine/cpu/matmul.h"

// The AVX-512 kernels are compiled where the compiler targets them (the default build uses
// -march=native); a PORTABLE build gets the generic kernel only. See matmul.cpp for why this
// is a compile-time choice rather than runtime dispatch.
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__AVX512DQ__) && defined(__F16C__) && defined(__FMA__)
#define PDCTL_MATMUL_AVX512 1
#else
#define PDCTL_MATMUL_AVX512 0
#endif
#if PDCTL_MATMUL_AVX512 && defined(__AVX512BF16__)
#define PDCTL_MATMUL_AVX512_BF16 1
#else
#define PDCTL_MATMUL_AVX512_BF16 0
#endif

namespace pdctl::engine::kernels {

struct MatmulArgs {
  const WeightView* w;
  const float* x;
  int64_t n_tokens;
  int64_t x_stride;
  float* y;
  int64_t y_stride;
};

enum class Path {
  kAuto,     // what matmul() does: picks one of the below by dtype and n_tokens
  kGeneric,  // plain C++ (the PORTABLE build's only kernel)
  kDot,      // AVX-512 dot products, weights converted in registers (decode, few tokens)
  kGemm,     // AVX-512 blocked GEMM over converted weight tiles (prefill, many tokens)
  kGemmBf16,  // BF16 weights only: GEMM with vdpbf16ps, activations rounded to BF16
};
const char* path_name(Path p);
bool path_available(Path p);

// matmul() with a forced path (kAuto = matmul itself). Unavailable paths (and kGemmBf16 for
// weights other than BF16) fall back to kGeneric.
void matmul_path(Path path, const WeightView& w, const float* x, int64_t n_tokens,
                 int64_t x_stride, float* y, int64_t y_stride, ThreadPool* pool);

// matmul() uses the GEMM from this many tokens on, the dot kernels below it: the GEMM converts
// each weight tile once and runs a register-blocked micro-kernel near the FMA peak, but its
// packing costs about what the dot kernels lose by converting weights in registers once per 4
// tokens up to ~10-12 tokens (measured on Zen 4, 2048x2048 F16: equal at 10-12).
inline constexpr int64_t kGemmMinTokens = 12;
// Longer calls run the GEMM on chunks of this many tokens.
inline constexpr int64_t kGemmMaxTokens = 1024;

// Half to float without branches (so that the generic kernel's conversion loop vectorises),
// exact for every input like fp16_to_fp32: normal and infinite/NaN halves are rebiased by a
// shift and one multiply by 2^-112; subnormal halves as the float 0.5 + m 2^-24, minus 0.5.
inline float fp16_to_fp32_branchless(uint16_t h) {
  const uint32_t w = static_cast<uint32_t>(h) << 16;
  const uint32_t sign = w & 0x80000000u;
  const uint32_t two_w = w + w;  // exponent and mantissa at the top, sign dropped
  const auto as_float = [](uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  };
  const auto as_bits = [](float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
  };
  // Exponent rebias by 224 (= 0xE0) then scale by 2^-112: net +112 = 127 - 15, and half's
  // Inf/NaN exponent 31 lands on 255 before the scale keeps it there (Inf * 2^-112 = Inf).
  const float normal = as_float((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
  const float subnormal = as_float((two_w >> 17) | (126u << 23)) - 0.5f;
  const uint32_t bits = two_w < (1u << 27) ? as_bits(subnormal) : as_bits(normal);
  return as_float(sign | bits);
}

// Row-range kernels.
void generic_rows(const MatmulArgs& a, int64_t r0, int64_t r1);
#if PDCTL_MATMUL_AVX512
void dot_rows_avx512(const MatmulArgs& a, int64_t r0, int64_t r1);
#endif

// A GEMM runs in two steps, each split between threads: the activations are packed once per
// call into a buffer the caller provides (by token ranges), then rows are computed from it.
struct GemmKernel {
  int64_t (*packed_x_bytes)(const MatmulArgs& a);
  void (*pack_x)(const MatmulArgs& a, void* packed_x, int64_t t0, int64_t t1);
  void (*rows)(const MatmulArgs& a, const void* packed_x, int64_t r0, int64_t r1);
};
// GEMMs split rows between threads in chunks of this many (their packed weight tile).
inline constexpr int64_t kGemmRowChunk = 256;
// The dot kernels hand threads chunks of about this many weight bytes.
inline constexpr int64_t kDotChunkBytes = 256 * 1024;
#if PDCTL_MATMUL_AVX512
GemmKernel gemm_avx512();
#endif
#if PDCTL_MATMUL_AVX512_BF16
GemmKernel gemm_bf16dot_avx512();
#endif

}  // namespace pdctl::engine::kernels

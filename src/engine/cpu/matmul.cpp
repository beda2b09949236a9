#include "engine/cpu/matmul.h"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <vector>

#include "engine/cpu/matmul_kernels.h"
#include "engine/cpu/thread_pool.h"

// Kernel selection is decided at compile time (PDCTL_MATMUL_AVX512, from the compiler's target
// macros) rather than by runtime CPU detection: the product is built on the machine that runs
// it (-march=native by default), so one code path per build is what gets tested and
// measured, and the compiler schedules the whole file for the target. A PORTABLE build is for
// correctness on any x86-64 and uses the generic kernel, written so that the compiler can
// vectorise it for whatever -march it is given.

namespace pdctl::engine {

void dequantize_row(const WeightView& w, int64_t r, float* out) {
  const uint8_t* row = w.row(r);
  switch (w.dtype) {
    case DType::kF32: {
      std::memcpy(out, row, static_cast<size_t>(w.cols) * sizeof(float));
      return;
    }
    // memcpy loads: a view may start at any byte (the kernels do not assume alignment either).
    case DType::kF16: {
      for (int64_t k = 0; k < w.cols; ++k) {
        uint16_t h;
        std::memcpy(&h, row + 2 * k, 2);
        out[k] = fp16_to_fp32(h);
      }
      return;
    }
    case DType::kBF16: {
      for (int64_t k = 0; k < w.cols; ++k) {
        uint16_t h;
        std::memcpy(&h, row + 2 * k, 2);
        out[k] = bf16_to_fp32(h);
      }
      return;
    }
    case DType::kQ8_0: {
      for (int64_t b = 0; b < w.cols / kQ8_0BlockElems; ++b) {
        const uint8_t* blk = row + b * kQ8_0BlockBytes;
        uint16_t d16;
        std::memcpy(&d16, blk, 2);
        const float d = fp16_to_fp32(d16);
        const int8_t* q = reinterpret_cast<const int8_t*>(blk + 2);
        for (int i = 0; i < kQ8_0BlockElems; ++i) out[b * kQ8_0BlockElems + i] = d * q[i];
      }
      return;
    }
  }
}

void matmul_reference(const WeightView& w, const float* x, int64_t n_tokens, int64_t x_stride,
                      float* y, int64_t y_stride) {
  std::vector<float> row(static_cast<size_t>(w.cols));
  for (int64_t r = 0; r < w.rows; ++r) {
    dequantize_row(w, r, row.data());
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* xt = x + t * x_stride;
      double acc = 0;
      for (int64_t k = 0; k < w.cols; ++k) acc += static_cast<double>(xt[k]) * row[k];
      y[t * y_stride + r] = static_cast<float>(acc);
    }
  }
}

void matmul(const WeightView& w, const float* x, int64_t n_tokens, int64_t x_stride, float* y,
            int64_t y_stride, ThreadPool* pool) {
  kernels::matmul_path(kernels::Path::kAuto, w, x, n_tokens, x_stride, y, y_stride, pool);
}

namespace kernels {
namespace {

// 16 partial sums in a fixed-size array: the compiler turns the inner loop into vector code
// of whatever width the target has, without reassociating anything itself.
float dot_generic(const float* a, const float* b, int64_t n) {
  constexpr int kLanes = 16;
  float acc[kLanes] = {};
  int64_t k = 0;
  for (; k + kLanes <= n; k += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += a[k + l] * b[k + l];
  float tail = 0;
  for (; k < n; ++k) tail += a[k] * b[k];
  for (int width = kLanes / 2; width > 0; width /= 2)
    for (int l = 0; l < width; ++l) acc[l] += acc[l + width];
  return acc[0] + tail;
}

using RowKernel = void (*)(const MatmulArgs&, int64_t, int64_t);

}  // namespace

void generic_rows(const MatmulArgs& a, int64_t r0, int64_t r1) {
  const WeightView& w = *a.w;
  const int64_t K = w.cols;
  // Four rows at a time, converted to floats once and used for every token.
  constexpr int kRows = 4;
  thread_local std::vector<float> buf;
  if (buf.size() < static_cast<size_t>(kRows * K)) buf.resize(static_cast<size_t>(kRows * K));
  for (int64_t r = r0; r < r1; r += kRows) {
    const int nr = static_cast<int>(std::min<int64_t>(kRows, r1 - r));
    const float* rows[kRows];
    for (int j = 0; j < nr; ++j) {
      // F32 rows are used in place where aligned (always, for GGUF tensors); otherwise copied.
      if (w.dtype == DType::kF32 && reinterpret_cast<uintptr_t>(w.row(r + j)) % alignof(float) == 0) {
        rows[j] = reinterpret_cast<const float*>(w.row(r + j));
      } else if (w.dtype == DType::kF16) {
        float* out = buf.data() + j * K;
        const uint8_t* row = w.row(r + j);
        for (int64_t k = 0; k < K; ++k) {
          uint16_t h;
          std::memcpy(&h, row + 2 * k, 2);
          out[k] = fp16_to_fp32_branchless(h);
        }
        rows[j] = out;
      } else {
        dequantize_row(w, r + j, buf.data() + j * K);
        rows[j] = buf.data() + j * K;
      }
    }
    for (int64_t t = 0; t < a.n_tokens; ++t) {
      const float* xt = a.x + t * a.x_stride;
      float* yt = a.y + t * a.y_stride + r;
      for (int j = 0; j < nr; ++j) yt[j] = dot_generic(xt, rows[j], K);
    }
  }
}

const char* path_name(Path p) {
  switch (p) {
    case Path::kAuto: return "auto";
    case Path::kGeneric: return "generic";
    case Path::kDot: return "dot";
    case Path::kGemm: return "gemm";
    case Path::kGemmBf16: return "gemm-bf16";
  }
  return "?";
}

bool path_available(Path p) {
  switch (p) {
    case Path::kAuto:
    case Path::kGeneric: return true;
    case Path::kDot:
    case Path::kGemm: return PDCTL_MATMUL_AVX512 != 0;
    case Path::kGemmBf16: return PDCTL_MATMUL_AVX512_BF16 != 0;
  }
  return false;
}

void matmul_path([[maybe_unused]] Path path, const WeightView& w, const float* x, int64_t n_tokens,
                 int64_t x_stride, float* y, int64_t y_stride, ThreadPool* pool) {
  if (w.rows <= 0 || n_tokens <= 0) return;
  const MatmulArgs args{&w, x, n_tokens, x_stride, y, y_stride};
  const bool threaded = pool && pool->size() > 1;
  RowKernel kernel = &generic_rows;
#if PDCTL_MATMUL_AVX512
  if (path == Path::kAuto) {
    path = n_tokens < kGemmMinTokens                             ? Path::kDot
           : w.dtype == DType::kBF16 && PDCTL_MATMUL_AVX512_BF16 ? Path::kGemmBf16
                                                                 : Path::kGemm;
  }
  if (path == Path::kDot) kernel = &dot_rows_avx512;
  const GemmKernel* gemm = nullptr;
  static const GemmKernel kGemmF32 = gemm_avx512();
  if (path == Path::kGemm) gemm = &kGemmF32;
#if PDCTL_MATMUL_AVX512_BF16
  static const GemmKernel kGemmBf16Dot = gemm_bf16dot_avx512();
  if (path == Path::kGemmBf16 && w.dtype == DType::kBF16) gemm = &kGemmBf16Dot;
#endif
  if (gemm && n_tokens > kGemmMaxTokens) {
    // Long prompts in chunks: bounds the packed activations (and the y block that each row
    // block revisits per k block) at the cost of converting each weight once per chunk (~2%).
    for (int64_t t0 = 0; t0 < n_tokens; t0 += kGemmMaxTokens)
      matmul_path(path, w, x + t0 * x_stride, std::min(kGemmMaxTokens, n_tokens - t0), x_stride, y + t0 * y_stride,
                  y_stride, pool);
    return;
  }
  if (gemm) {
    // The packed activations belong to the calling thread and are read by all.
    // It only grows: resizing down and up again would clear it on every call.
    thread_local std::vector<std::byte> packed;
    const size_t need = static_cast<size_t>(gemm->packed_x_bytes(args)) + 64;
    if (packed.size() < need) packed.resize(need);
    void* xp = packed.data() + (64 - reinterpret_cast<uintptr_t>(packed.data()) % 64) % 64;
    if (!threaded) {
      gemm->pack_x(args, xp, 0, n_tokens);
      gemm->rows(args, xp, 0, w.rows);
      return;
    }
    // Rows in chunks of one packed tile, claimed dynamically: a thread that another job
    // delays takes fewer.
    pool->parallel_chunks(n_tokens, 64, [&](int64_t t0, int64_t t1, int) { gemm->pack_x(args, xp, t0, t1); });
    pool->parallel_chunks(w.rows, kGemmRowChunk, [&](int64_t r0, int64_t r1, int) { gemm->rows(args, xp, r0, r1); });
    return;
  }
#endif
  // Dot and generic kernels hand rows to threads in chunks of whole 64-byte lines of y (two
  // threads never write the same line) and of about kDotChunkBytes of weights: small enough
  // that the threads finish together when one of them is delayed (chunks are claimed
  // dynamically), large enough that each is a long sequential stream.
  constexpr int64_t kAlign = 16;
  if (!threaded || w.rows <= kAlign) {
    kernel(args, 0, w.rows);
    return;
  }
  const int64_t chunk = std::max<int64_t>(kAlign, kDotChunkBytes / std::max<int64_t>(w.row_bytes(), 1) / kAlign * kAlign);
  pool->parallel_chunks(w.rows, chunk, [&](int64_t r0, int64_t r1, int) { kernel(args, r0, r1); });
}

}  // namespace kernels
}  // namespace pdctl::engine

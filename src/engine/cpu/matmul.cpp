#include "engine/cpu/matmul.h"

#include <cstring>
#include <vector>

#include "engine/cpu/thread_pool.h"

namespace pdctl::engine {

void dequantize_row(const WeightView& w, int64_t r, float* out) {
  const uint8_t* row = w.row(r);
  switch (w.dtype) {
    case DType::kF32: {
      const float* p = reinterpret_cast<const float*>(row);
      for (int64_t k = 0; k < w.cols; ++k) out[k] = p[k];
      return;
    }
    case DType::kF16: {
      const uint16_t* p = reinterpret_cast<const uint16_t*>(row);
      for (int64_t k = 0; k < w.cols; ++k) out[k] = fp16_to_fp32(p[k]);
      return;
    }
    case DType::kBF16: {
      const uint16_t* p = reinterpret_cast<const uint16_t*>(row);
      for (int64_t k = 0; k < w.cols; ++k) out[k] = bf16_to_fp32(p[k]);
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

// A straightforward version to start from; the optimised kernels replace it.
void matmul(const WeightView& w, const float* x, int64_t n_tokens, int64_t x_stride, float* y,
            int64_t y_stride, ThreadPool* pool) {
  auto body = [&](int64_t r0, int64_t r1, int) {
    std::vector<float> row(static_cast<size_t>(w.cols));
    for (int64_t r = r0; r < r1; ++r) {
      dequantize_row(w, r, row.data());
      for (int64_t t = 0; t < n_tokens; ++t) {
        const float* xt = x + t * x_stride;
        float acc = 0;
        for (int64_t k = 0; k < w.cols; ++k) acc += xt[k] * row[k];
        y[t * y_stride + r] = acc;
      }
    }
  };
  if (pool) {
    pool->parallel_for(w.rows, body);
  } else {
    body(0, w.rows, 0);
  }
}

}  // namespace pdctl::engine

#pragma once
// The matrix products of the forward pass: activations (f32) times a weight matrix stored
// row-major as [out_features][in_features] (PyTorch's nn.Linear layout, and GGUF's), in
// any weight dtype, computed in place from the (memory-mapped) weights: never a full f32
// copy of a model.
#include <cstdint>

#include "engine/dtype.h"

namespace pdctl::engine {

class ThreadPool;

// A weight matrix used in place.
struct WeightView {
  DType dtype = DType::kF32;
  int64_t rows = 0;        // out_features
  int64_t cols = 0;        // in_features (a multiple of 32 for Q8_0)
  const void* data = nullptr;
  int64_t row_bytes() const { return dtype_bytes(dtype, cols); }
  const uint8_t* row(int64_t r) const { return static_cast<const uint8_t*>(data) + r * row_bytes(); }
};

// y[t][r] = sum_k x[t][k] * W[r][k]  for t < n_tokens, r < W.rows.
// x: n_tokens rows of W.cols floats, `x_stride` floats apart; y: `y_stride` floats apart.
// `pool` may be null (single-threaded).
void matmul(const WeightView& w, const float* x, int64_t n_tokens, int64_t x_stride, float* y,
            int64_t y_stride, ThreadPool* pool);

// The plain scalar definition of matmul, for tests of the optimised kernels.
void matmul_reference(const WeightView& w, const float* x, int64_t n_tokens, int64_t x_stride,
                      float* y, int64_t y_stride);

// Converts row `r` of `w` to floats (embedding lookups of any dtype).
void dequantize_row(const WeightView& w, int64_t r, float* out);

}  // namespace pdctl::engine

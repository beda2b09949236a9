// Every matmul kernel path against matmul_reference (double accumulation) over a matrix of
// shapes, dtypes, strides and thread counts.
//
// Tolerance: |y - ref| <= tol(dtype) * sum_k |x_k * w_k| + 1e-30. The bound is relative to the
// sum of absolute terms because cancellation can make y itself arbitrarily small. The kernels
// accumulate in float with 16 lanes (or per 256-column block), so the worst case is a few
// float roundings per term; 2^-16 leaves room for K up to ~8K while still failing on any real
// bug (a wrong or missing term is off by O(1) of a term). All dtypes share it because every
// path converts weights exactly to float (F16, BF16) or rounds d*q exactly like
// dequantize_row (Q8_0), and keeps activations in float.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/cpu/matmul.h"
#include "engine/cpu/matmul_kernels.h"
#include "engine/cpu/thread_pool.h"

using namespace pdctl::engine;
namespace kn = pdctl::engine::kernels;

namespace {

struct Matrix {
  DType dtype;
  int64_t rows, cols;
  std::vector<uint8_t> bytes;
  WeightView view() const { return WeightView{dtype, rows, cols, bytes.data()}; }
};

// Random weights of roughly unit scale in the given dtype; Q8_0 gets random scales and int8s.
Matrix random_matrix(DType dtype, int64_t rows, int64_t cols, std::mt19937& rng) {
  Matrix m{dtype, rows, cols, std::vector<uint8_t>(static_cast<size_t>(dtype_bytes(dtype, cols) * rows))};
  std::normal_distribution<float> normal(0.f, 1.f);
  uint8_t* p = m.bytes.data();
  const int64_t n = rows * cols;
  switch (dtype) {
    case DType::kF32:
      for (int64_t i = 0; i < n; ++i) {
        const float f = normal(rng);
        std::memcpy(p + 4 * i, &f, 4);
      }
      break;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = fp32_to_fp16(normal(rng));
        std::memcpy(p + 2 * i, &h, 2);
      }
      break;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = fp32_to_bf16(normal(rng));
        std::memcpy(p + 2 * i, &h, 2);
      }
      break;
    case DType::kQ8_0: {
      std::uniform_int_distribution<int> q(-127, 127);
      for (int64_t b = 0; b < n / kQ8_0BlockElems; ++b) {
        uint8_t* blk = p + b * kQ8_0BlockBytes;
        const uint16_t d = fp32_to_fp16(0.01f + std::fabs(normal(rng)) * 0.02f);
        std::memcpy(blk, &d, 2);
        for (int i = 0; i < kQ8_0BlockElems; ++i) blk[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(q(rng)));
      }
      break;
    }
  }
  return m;
}

// The reference result for x and, per output, the sum of |x_k w_k| that errors are measured
// against.
struct Reference {
  std::vector<float> y;
  std::vector<double> magnitude;
  int64_t n_tokens, y_stride, rows;
};

Reference reference(const WeightView& w, const std::vector<float>& x, int64_t n_tokens, int64_t x_stride,
                    int64_t y_stride) {
  Reference ref{std::vector<float>(static_cast<size_t>(n_tokens * y_stride)),
                std::vector<double>(static_cast<size_t>(n_tokens * y_stride)), n_tokens, y_stride, w.rows};
  matmul_reference(w, x.data(), n_tokens, x_stride, ref.y.data(), y_stride);
  std::vector<float> row(static_cast<size_t>(w.cols));
  for (int64_t r = 0; r < w.rows; ++r) {
    dequantize_row(w, r, row.data());
    for (int64_t t = 0; t < n_tokens; ++t) {
      double mag = 0;
      for (int64_t k = 0; k < w.cols; ++k) mag += std::fabs(static_cast<double>(x[t * x_stride + k]) * row[k]);
      ref.magnitude[t * y_stride + r] = mag;
    }
  }
  return ref;
}

// The worst error of y relative to the sum of |terms|.
double worst_error(const Reference& ref, const std::vector<float>& y) {
  double worst = 0;
  for (int64_t t = 0; t < ref.n_tokens; ++t)
    for (int64_t r = 0; r < ref.rows; ++r) {
      const int64_t i = t * ref.y_stride + r;
      const double err = std::fabs(static_cast<double>(y[i]) - ref.y[i]);
      worst = std::max(worst, err / (ref.magnitude[i] + 1e-30));
    }
  return worst;
}

double check_against_reference(const WeightView& w, const std::vector<float>& x, int64_t n_tokens,
                               int64_t x_stride, const std::vector<float>& y, int64_t y_stride) {
  return worst_error(reference(w, x, n_tokens, x_stride, y_stride), y);
}

constexpr double kTolerance = 1.0 / 65536;

// Whether matmul_path(path) on BF16 weights with n tokens rounds activations to BF16.
bool rounds_activations(kn::Path path, int64_t n) {
  if (path == kn::Path::kGemmBf16) return true;
  if (path != kn::Path::kAuto || !kn::path_available(kn::Path::kGemmBf16)) return false;
  return n >= kn::kGemmMinTokens;
}

}  // namespace

TEST_CASE("matmul: the generic kernel's branch-free half conversion is exact for all 65536 halves") {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float a = fp16_to_fp32(static_cast<uint16_t>(h));
    const float b = kn::fp16_to_fp32_branchless(static_cast<uint16_t>(h));
    if (std::isnan(a)) {
      REQUIRE(std::isnan(b));
    } else {
      uint32_t ua, ub;
      std::memcpy(&ua, &a, 4);
      std::memcpy(&ub, &b, 4);
      REQUIRE(ua == ub);
    }
  }
}

TEST_CASE("matmul: every path matches the reference over shapes, dtypes, strides, threads") {
  std::mt19937 rng(1234);
  struct Shape {
    int64_t rows, cols;
  };
  // Rows and columns off the tile sizes (16, 32 rows; 16, 256 columns), and one GEMM
  // shape with several k blocks and row blocks. Q8_0 takes the ones with cols % 32 == 0.
  const Shape shapes[] = {{1, 32}, {5, 17}, {37, 64}, {33, 100}, {70, 288}, {129, 544}, {300, 96}};
  const int64_t token_counts[] = {1, 2, 3, 7, 16, 64, 100};
  const DType dtypes[] = {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0};
  const kn::Path paths[] = {kn::Path::kAuto, kn::Path::kGeneric, kn::Path::kDot, kn::Path::kGemm, kn::Path::kGemmBf16};
  ThreadPool pool2(2), pool3(3);
  ThreadPool* pools[] = {nullptr, &pool2, &pool3};

  for (DType dtype : dtypes) {
    for (const Shape& s : shapes) {
      if (dtype == DType::kQ8_0 && s.cols % kQ8_0BlockElems != 0) continue;
      const Matrix m = random_matrix(dtype, s.rows, s.cols, rng);
      const WeightView w = m.view();
      for (int64_t n : token_counts) {
        const int64_t x_stride = s.cols + 3;  // strides differ from cols
        const int64_t y_stride = s.rows + 5;
        std::vector<float> x(static_cast<size_t>(n * x_stride));
        std::normal_distribution<float> normal(0.f, 1.f);
        for (float& v : x) v = normal(rng);
        const Reference ref_exact = reference(w, x, n, x_stride, y_stride);
        std::vector<float> x_rounded = x;
        for (float& v : x_rounded) v = bf16_to_fp32(fp32_to_bf16(v));
        const Reference ref_rounded =
            dtype == DType::kBF16 ? reference(w, x_rounded, n, x_stride, y_stride) : Reference{};
        for (kn::Path path : paths) {
          if (!kn::path_available(path)) continue;
          // Paths that round activations to BF16 are checked against the reference for
          // rounded activations (so that a bug cannot hide in the larger rounding error);
          // their distance from the exact result has its own test below.
          const bool rounds_x = dtype == DType::kBF16 && rounds_activations(path, n);
          const Reference& ref = rounds_x ? ref_rounded : ref_exact;
          for (ThreadPool* pool : pools) {
            CAPTURE(dtype_name(dtype));
            CAPTURE(s.rows);
            CAPTURE(s.cols);
            CAPTURE(n);
            CAPTURE(kn::path_name(path));
            CAPTURE(pool ? pool->size() : 1);
            // Sentinels in the stride gaps must survive.
            std::vector<float> y(static_cast<size_t>(n * y_stride), 12345.f);
            kn::matmul_path(path, w, x.data(), n, x_stride, y.data(), y_stride, pool);
            bool gaps_intact = true;
            for (int64_t t = 0; t < n; ++t)
              for (int64_t r = s.rows; r < y_stride; ++r) gaps_intact &= y[t * y_stride + r] == 12345.f;
            CHECK(gaps_intact);
            CHECK(worst_error(ref, y) <= kTolerance);
          }
        }
      }
    }
  }
}

TEST_CASE("matmul: BF16 with activations rounded to BF16 stays within 2^-9 of the exact result") {
  // Rounding each x to BF16 moves it by at most 2^-9 of itself, so the result moves by at most
  // 2^-9 of sum |x w|, plus the f32 accumulation error.
  if (!kn::path_available(kn::Path::kGemmBf16)) return;
  std::mt19937 rng(77);
  const Matrix m = random_matrix(DType::kBF16, 70, 2048, rng);
  const int64_t n = 40;
  std::vector<float> x(static_cast<size_t>(n * 2048));
  std::normal_distribution<float> normal(0.f, 1.f);
  for (float& v : x) v = normal(rng);
  std::vector<float> y(static_cast<size_t>(n * 70));
  kn::matmul_path(kn::Path::kGemmBf16, m.view(), x.data(), n, 2048, y.data(), 70, nullptr);
  const double err = check_against_reference(m.view(), x, n, 2048, y, 70);
  CHECK(err <= 1.0 / 512 + kTolerance);
  MESSAGE("BF16 activations: worst error " << err << " of sum |x w| (bound 2^-9 = " << 1.0 / 512 << ")");
}

TEST_CASE("matmul: F32 is accurate to a few float roundings on long rows") {
  // Goldens are computed from F32 models, so F32 must stay close to double accumulation even
  // for the longest rows of a 1B model (8192): 2^-20 of the sum of |terms|.
  std::mt19937 rng(99);
  const Matrix m = random_matrix(DType::kF32, 40, 8192, rng);
  for (int64_t n : {1, 5, 24}) {
    std::vector<float> x(static_cast<size_t>(n * 8192));
    std::normal_distribution<float> normal(0.f, 1.f);
    for (float& v : x) v = normal(rng);
    for (kn::Path path : {kn::Path::kGeneric, kn::Path::kDot, kn::Path::kGemm}) {
      if (!kn::path_available(path)) continue;
      CAPTURE(kn::path_name(path));
      CAPTURE(n);
      std::vector<float> y(static_cast<size_t>(n * 40));
      kn::matmul_path(path, m.view(), x.data(), n, 8192, y.data(), 40, nullptr);
      CHECK(check_against_reference(m.view(), x, n, 8192, y, 40) <= 1.0 / (1 << 20));
    }
  }
}

TEST_CASE("matmul: calls longer than one GEMM chunk") {
  std::mt19937 rng(3);
  const int64_t n = kn::kGemmMaxTokens * 2 + 37;
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    const Matrix m = random_matrix(dtype, 40, 64, rng);
    std::vector<float> x(static_cast<size_t>(n * 64));
    std::normal_distribution<float> normal(0.f, 1.f);
    for (float& v : x) v = normal(rng);
    std::vector<float> xr = x;
    if (rounds_activations(kn::Path::kAuto, n) && dtype == DType::kBF16)
      for (float& v : xr) v = bf16_to_fp32(fp32_to_bf16(v));
    ThreadPool pool(2);
    std::vector<float> y(static_cast<size_t>(n * 40));
    matmul(m.view(), x.data(), n, 64, y.data(), 40, &pool);
    CHECK(check_against_reference(m.view(), xr, n, 64, y, 40) <= kTolerance);
  }
}

TEST_CASE("matmul: weights at an unaligned address and special values") {
  // Memory-mapped GGUF tensors are only 32-byte aligned, or less in old files: every path uses
  // unaligned loads for weights and activations.
  std::mt19937 rng(5);
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0}) {
    const Matrix m = random_matrix(dtype, 45, 96, rng);
    std::vector<uint8_t> shifted(m.bytes.size() + 1);
    std::memcpy(shifted.data() + 1, m.bytes.data(), m.bytes.size());
    const WeightView w{dtype, 45, 96, shifted.data() + 1};
    for (int64_t n : {1, 4, 20}) {
      std::vector<float> x(static_cast<size_t>(n * 96));
      std::normal_distribution<float> normal(0.f, 1.f);
      for (float& v : x) v = normal(rng);
      for (kn::Path path : {kn::Path::kGeneric, kn::Path::kDot, kn::Path::kGemm}) {
        if (!kn::path_available(path)) continue;
        CAPTURE(dtype_name(dtype));
        CAPTURE(kn::path_name(path));
        std::vector<float> y(static_cast<size_t>(n * 45));
        kn::matmul_path(path, w, x.data(), n, 96, y.data(), 45, nullptr);
        CHECK(check_against_reference(w, x, n, 96, y, 45) <= kTolerance);
      }
    }
  }
  // A NaN activation poisons exactly its token's outputs (no token's data leaks into another's).
  const Matrix z = random_matrix(DType::kF16, 20, 64, rng);
  std::vector<float> x(64 * 2, 1.f);
  x[3] = NAN;
  for (kn::Path path : {kn::Path::kGeneric, kn::Path::kDot, kn::Path::kGemm}) {
    if (!kn::path_available(path)) continue;
    std::vector<float> y(2 * 20, 0.f);
    kn::matmul_path(path, z.view(), x.data(), 2, 64, y.data(), 20, nullptr);
    for (int r = 0; r < 20; ++r) {
      CHECK(std::isnan(y[r]));
      CHECK(!std::isnan(y[20 + r]));
    }
  }
}

TEST_CASE("matmul: matrices split into many dynamically claimed chunks between threads") {
  // 1000 x 512 F32 is 2 MB: the dot kernels hand out ~8 chunks of rows (not multiples of the
  // 8-row tile), the GEMMs 4 chunks of 256 rows, the last one short.
  std::mt19937 rng(4321);
  ThreadPool pool2(2), pool3(3);
  for (DType dtype : {DType::kF32, DType::kF16}) {
    const Matrix m = random_matrix(dtype, 1000, 512, rng);
    for (int64_t n : {1, 3, 16}) {
      std::vector<float> x(static_cast<size_t>(n * 512));
      std::normal_distribution<float> normal(0.f, 1.f);
      for (float& v : x) v = normal(rng);
      const Reference ref = reference(m.view(), x, n, 512, 1000);
      for (ThreadPool* pool : {&pool2, &pool3}) {
        CAPTURE(dtype_name(dtype));
        CAPTURE(n);
        CAPTURE(pool->size());
        std::vector<float> y(static_cast<size_t>(n * 1000), 12345.f);
        kn::matmul_path(kn::Path::kAuto, m.view(), x.data(), n, 512, y.data(), 1000, pool);
        CHECK(worst_error(ref, y) <= kTolerance);
      }
    }
  }
}

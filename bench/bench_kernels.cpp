// bench_kernels: the matmul kernels on the Llama-3.2-1B shapes, against the machine's own
// ceilings (FMA peak, read bandwidth) and baselines measured in the same run (the first,
// naive matmul; OpenBLAS sgemm where built), with an estimate of whole-model tokens/s.
//
//   bench_kernels [--quick] [--dtypes f16,bf16,q8_0,f32] [--threads 1,2] [--tokens 1,4,16,512]
//                 [--min-time S] [--no-baseline] [--no-machine]
//
// Numbers on a shared machine are noisy: every figure is a median of repeated runs.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench_machine.h"
#include "engine/cpu/matmul.h"
#include "engine/cpu/matmul_kernels.h"
#include "engine/cpu/thread_pool.h"

#if PDCTL_BENCH_OPENBLAS
#include <cblas.h>
#endif

using namespace pdctl::engine;
namespace kn = pdctl::engine::kernels;

namespace {

struct Options {
  std::vector<DType> dtypes{DType::kF16, DType::kBF16, DType::kQ8_0, DType::kF32};
  std::vector<int> threads{1, 2};
  std::vector<int64_t> tokens{1, 4, 16, 512};
  double min_time = 0.5;
  bool baseline = true;
  bool machine = true;
};

template <class T, class Parse>
std::vector<T> split(const char* s, Parse parse) {
  std::vector<T> out;
  std::string cur;
  for (const char* p = s;; ++p) {
    if (*p == ',' || *p == 0) {
      if (!cur.empty()) out.push_back(parse(cur));
      cur.clear();
      if (*p == 0) break;
    } else {
      cur += *p;
    }
  }
  return out;
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--quick") {
      o.min_time = 0.15;
      o.baseline = false;
    } else if (a == "--dtypes") {
      o.dtypes = split<DType>(next(), [](const std::string& s) {
        auto r = parse_dtype(s);
        if (!r.has_value()) {
          std::fprintf(stderr, "unknown dtype %s\n", s.c_str());
          std::exit(2);
        }
        return *r;
      });
    } else if (a == "--threads") {
      o.threads = split<int>(next(), [](const std::string& s) { return std::stoi(s); });
    } else if (a == "--tokens") {
      o.tokens = split<int64_t>(next(), [](const std::string& s) { return std::stoll(s); });
    } else if (a == "--min-time") {
      o.min_time = std::stod(next());
    } else if (a == "--no-baseline") {
      o.baseline = false;
    } else if (a == "--no-machine") {
      o.machine = false;
    } else {
      std::fprintf(stderr,
                   "usage: bench_kernels [--quick] [--dtypes f16,bf16,q8_0,f32] [--threads 1,2] "
                   "[--tokens 1,4,16,512] [--min-time S] [--no-baseline] [--no-machine]\n");
      std::exit(a == "--help" || a == "-h" ? 0 : 2);
    }
  }
  return o;
}

// ------------------------------------------------------------------ the 1B model's shapes
struct Shape {
  const char* name;
  int64_t rows, cols;
  int per_layer;  // how many of these a layer has (0: once per model)
};
// Llama-3.2-1B: hidden 2048, 32 heads of 64, 8 KV heads, FFN 8192, vocab 128256, 16 layers.
const Shape kShapes[] = {
    {"q/o 2048x2048", 2048, 2048, 2},   {"k/v 512x2048", 512, 2048, 2},
    {"gate/up 8192x2048", 8192, 2048, 2}, {"down 2048x8192", 2048, 8192, 1},
    {"lm_head 128256x2048", 128256, 2048, 0},
};
constexpr int kLayers = 16;

// ------------------------------------------------------------------ weights
// One arena much larger than L3 holds the weights; successive calls use successive windows
// of it, so that a decode-sized call reads from memory as it would in a model, not from the
// copy an earlier repetition left in L3. It is filled with valid values of the dtype (no
// NaNs or subnormals) by repeating a random tile.
class Arena {
 public:
  explicit Arena(int64_t bytes) : bytes_(bytes), data_(static_cast<uint8_t*>(std::aligned_alloc(4096, bytes))) {}
  ~Arena() { std::free(data_); }
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  void fill(DType dtype) {
    if (dtype == filled_) return;
    const int64_t tile_elems = 32 * 2048;  // a whole number of Q8_0 blocks
    const int64_t tile_bytes = dtype_bytes(dtype, tile_elems);
    std::vector<uint8_t> tile(static_cast<size_t>(tile_bytes));
    std::mt19937 rng(42);
    std::normal_distribution<float> normal(0.f, 0.05f);
    for (int64_t i = 0; i < tile_elems; ++i) {
      const float f = normal(rng);
      switch (dtype) {
        case DType::kF32: std::memcpy(&tile[4 * i], &f, 4); break;
        case DType::kF16: {
          const uint16_t h = fp32_to_fp16(f);
          std::memcpy(&tile[2 * i], &h, 2);
          break;
        }
        case DType::kBF16: {
          const uint16_t h = fp32_to_bf16(f);
          std::memcpy(&tile[2 * i], &h, 2);
          break;
        }
        case DType::kQ8_0: {
          const int64_t b = i / kQ8_0BlockElems, j = i % kQ8_0BlockElems;
          uint8_t* blk = &tile[b * kQ8_0BlockBytes];
          if (j == 0) {
            const uint16_t d = fp32_to_fp16(0.001f);
            std::memcpy(blk, &d, 2);
          }
          blk[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::lround(f * 1000) % 127));
          break;
        }
      }
    }
    for (int64_t off = 0; off < bytes_; off += tile_bytes)
      std::memcpy(data_ + off, tile.data(), static_cast<size_t>(std::min(tile_bytes, bytes_ - off)));
    filled_ = dtype;
  }

  // The i-th window of `bytes` (page-aligned), wrapping around.
  const uint8_t* window(int64_t bytes, int64_t i) const {
    const int64_t step = (bytes + 4095) / 4096 * 4096;
    const int64_t n = std::max<int64_t>(1, bytes_ / step);
    return data_ + (i % n) * step;
  }

 private:
  int64_t bytes_;
  uint8_t* data_;
  DType filled_ = static_cast<DType>(255);
};

// ------------------------------------------------------------------ the first matmul
// matmul.cpp's first version, kept here as the baseline for the speed-up ratio.
void matmul_naive(const WeightView& w, const float* x, int64_t n_tokens, int64_t x_stride, float* y,
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

struct Result {
  double seconds, cpu_seconds;  // wall; CPU / threads
  double gflops, cpu_gflops;
  double gbs;  // weight bytes per (wall) second
};

using MatmulFn = void (*)(const WeightView&, const float*, int64_t, int64_t, float*, int64_t, ThreadPool*);

Result run_matmul(MatmulFn fn, Arena& arena, DType dtype, const Shape& s, int64_t T, ThreadPool& pool,
                  double min_time, int min_reps) {
  const int64_t wbytes = dtype_bytes(dtype, s.cols) * s.rows;
  std::vector<float> x(static_cast<size_t>(T * s.cols));
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.f, 1.f);
  for (float& v : x) v = normal(rng);
  std::vector<float> y(static_cast<size_t>(T * s.rows));
  int64_t call = 0;
  const bench::Timing t = bench::time_median(
      [&] {
        const WeightView w{dtype, s.rows, s.cols, arena.window(wbytes, call++)};
        fn(w, x.data(), T, s.cols, y.data(), s.rows, &pool);
      },
      min_reps, min_time, pool.size());
  const double gflop = 2.0 * T * s.rows * s.cols / 1e9;
  return {t.wall, t.cpu, gflop / t.wall, gflop / t.cpu, wbytes / t.wall / 1e9};
}

}  // namespace

int main(int argc, char** argv) {
  const Options opt = parse_args(argc, argv);
  std::printf("bench_kernels: matmul kernels on Llama-3.2-1B shapes. Preliminary on a shared machine:\n"
              "medians of repeated runs; compare only numbers from the same run.\n"
              "kernels: %s\n\n", PDCTL_MATMUL_AVX512 ? "AVX-512 (dot + gemm)" : "generic (PORTABLE build)");

  std::map<int, bench::Rate> bandwidth;
  if (opt.machine) {
    std::printf("== machine\n");
    for (int th : opt.threads) {
      ThreadPool pool(th);
      const bench::Peaks p = bench::measure_peaks(pool);
      const bench::Rate bw1 = bench::measure_read_bandwidth(pool, int64_t{1} << 30, 1, 7);
      const bench::Rate bw8 = bench::measure_read_bandwidth(pool, int64_t{1} << 30, 8, 7);
      // The ceiling for decode: the better of one stream and eight side by side.
      bandwidth[th] = {std::max(bw1.wall, bw8.wall), std::max(bw1.cpu, bw8.cpu)};
      std::printf("threads %d: FP32 FMA peak %6.1f (cpu %6.1f) GFLOP/s | vdpbf16ps %6.1f (cpu %6.1f) GFLOP/s | "
                  "vpdpbusd %6.1f (cpu %6.1f) GOP/s\n"
                  "           read bandwidth (1 GiB): 1 stream %5.1f (cpu %5.1f) GB/s, 8 rows at once %5.1f (cpu %5.1f) GB/s",
                  th, p.fma_gflops.wall, p.fma_gflops.cpu, p.bf16_gflops.wall, p.bf16_gflops.cpu,
                  p.vnni_gops.wall, p.vnni_gops.cpu, bw1.wall, bw1.cpu, bw8.wall, bw8.cpu);
      if (th > 1) std::printf(" | empty parallel_for %.1f us", bench::measure_pool_round_trip_us(pool, 2000));
      std::printf("\n");
    }
    std::printf("\n");
  }

  // The largest matrix (F32 lm_head, 1 GiB) fits; smaller ones rotate through it.
  Arena arena(int64_t{1} << 30 | int64_t{1} << 28);
  // times[dtype][threads][tokens][shape index]
  std::map<DType, std::map<int, std::map<int64_t, std::vector<Result>>>> times;

  std::printf("== matmul (y = x W^T): ms per call, GFLOP/s, weight GB/s; cpu: by CPU time / threads\n");
  std::printf("%-20s %-8s %4s %3s %10s %10s %9s %9s %8s\n", "shape", "dtype", "T", "thr", "ms", "cpu ms", "GFLOP/s",
              "cpu GF/s", "GB/s");
  for (DType dtype : opt.dtypes) {
    arena.fill(dtype);
    for (int th : opt.threads) {
      ThreadPool pool(th);
      for (int64_t T : opt.tokens) {
        auto& row = times[dtype][th][T];
        for (const Shape& s : kShapes) {
          // Prefill computes logits for the last token only: lm_head at 512 tokens is shown
          // once (it takes seconds) and not used by the estimate.
          const bool huge = s.rows * s.cols * T > int64_t{1} << 36;
          const Result r = run_matmul(&matmul, arena, dtype, s, T, pool, huge ? 0 : opt.min_time, huge ? 1 : 3);
          row.push_back(r);
          std::printf("%-20s %-8s %4lld %3d %10.3f %10.3f %9.1f %9.1f %8.1f\n", s.name, dtype_name(dtype),
                      static_cast<long long>(T), th, r.seconds * 1e3, r.cpu_seconds * 1e3, r.gflops,
                      r.cpu_gflops, r.gbs);
          std::fflush(stdout);
        }
      }
    }
  }

  if (opt.baseline) {
    std::printf("\n== baselines (same run): the first naive matmul, and OpenBLAS sgemm on F32\n");
    const Shape& s = kShapes[0];
    for (DType dtype : {DType::kF16, DType::kF32}) {
      arena.fill(dtype);
      for (int th : opt.threads) {
        ThreadPool pool(th);
        for (int64_t T : {int64_t{1}, int64_t{16}}) {
          const Result naive = run_matmul(&matmul_naive, arena, dtype, s, T, pool, 0.3, 2);
          const Result ours = run_matmul(&matmul, arena, dtype, s, T, pool, 0.3, 3);
          std::printf("%-20s %-8s T=%-4lld thr=%d: naive %8.2f (cpu %8.2f) GFLOP/s, now %8.2f (cpu %8.2f) "
                      "GFLOP/s: x%.1f (cpu x%.1f)\n", s.name, dtype_name(dtype), static_cast<long long>(T), th,
                      naive.gflops, naive.cpu_gflops, ours.gflops, ours.cpu_gflops, ours.gflops / naive.gflops,
                      ours.cpu_gflops / naive.cpu_gflops);
        }
      }
    }
    // BF16 prefill: the exact GEMM (weights to F32) against vdpbf16ps (activations to BF16).
    if (kn::path_available(kn::Path::kGemmBf16)) {
      arena.fill(DType::kBF16);
      for (int th : opt.threads) {
        ThreadPool pool(th);
        const Shape& s = kShapes[0];
        auto exact = [](const WeightView& w, const float* x, int64_t n, int64_t xs, float* y, int64_t ys, ThreadPool* p) {
          kn::matmul_path(kn::Path::kGemm, w, x, n, xs, y, ys, p);
        };
        auto dot = [](const WeightView& w, const float* x, int64_t n, int64_t xs, float* y, int64_t ys, ThreadPool* p) {
          kn::matmul_path(kn::Path::kGemmBf16, w, x, n, xs, y, ys, p);
        };
        const Result e = run_matmul(exact, arena, DType::kBF16, s, 512, pool, 0.5, 3);
        const Result d = run_matmul(dot, arena, DType::kBF16, s, 512, pool, 0.5, 3);
        std::printf("%-20s bf16 T=512  thr=%d: exact (F32 GEMM) %7.1f (cpu %7.1f) GFLOP/s, vdpbf16ps %7.1f (cpu %7.1f) "
                    "GFLOP/s\n", s.name, th, e.gflops, e.cpu_gflops, d.gflops, d.cpu_gflops);
      }
    }
#if PDCTL_BENCH_OPENBLAS
    arena.fill(DType::kF32);
    for (int th : opt.threads) {
      ThreadPool pool(th);
      openblas_set_num_threads(th);
      for (const Shape& s : {kShapes[0], kShapes[2]}) {
        for (int64_t T : {int64_t{16}, int64_t{512}}) {
          auto blas = [](const WeightView& w, const float* x, int64_t n, int64_t xs, float* y, int64_t ys,
                         ThreadPool*) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(w.rows),
                        static_cast<int>(w.cols), 1.0f, x, static_cast<int>(xs),
                        static_cast<const float*>(w.data), static_cast<int>(w.cols), 0.0f, y, static_cast<int>(ys));
          };
          const Result b = run_matmul(blas, arena, DType::kF32, s, T, pool, 0.5, 3);
          const Result ours = run_matmul(&matmul, arena, DType::kF32, s, T, pool, 0.5, 3);
          std::printf("%-20s f32 T=%-4lld thr=%d: OpenBLAS %7.1f (cpu %7.1f) GFLOP/s, pdctl %7.1f (cpu %7.1f) "
                      "GFLOP/s\n", s.name, static_cast<long long>(T), th, b.gflops, b.cpu_gflops, ours.gflops,
                      ours.cpu_gflops);
        }
      }
    }
#endif
  }

  // Whole-model estimate: the sum of matmul times only (no attention, norms, RoPE, sampling).
  std::printf("\n== Llama-3.2-1B estimate from matmul times alone (16 layers; prefill computes lm_head for\n"
              "   the last token only); llama.cpp F16 on this machine: pp512 45.0 / 87.4 t/s, tg128 10.7 / 13.6 t/s\n");
  for (DType dtype : opt.dtypes) {
    for (int th : opt.threads) {
      auto& by_t = times[dtype][th];
      // Model time from per-shape times (wall or CPU): 16 layers plus one lm_head call.
      auto model_time = [&](int64_t T, bool cpu) {
        double t = 0;
        for (size_t i = 0; i < 4; ++i) t += (cpu ? by_t[T][i].cpu_seconds : by_t[T][i].seconds) * kShapes[i].per_layer;
        return t * kLayers + (cpu ? by_t[1][4].cpu_seconds : by_t[1][4].seconds);
      };
      if (by_t.count(1)) {
        const double t1 = model_time(1, false), c1 = model_time(1, true);
        double bytes = 0;
        for (const Shape& s : kShapes)
          bytes += static_cast<double>(dtype_bytes(dtype, s.cols)) * s.rows * (s.per_layer ? s.per_layer * kLayers : 1);
        std::printf("%-8s thr=%d decode  %6.1f tokens/s (cpu %6.1f)  %5.1f GB/s (cpu %5.1f)", dtype_name(dtype), th,
                    1 / t1, 1 / c1, bytes / t1 / 1e9, bytes / c1 / 1e9);
        if (bandwidth.count(th))
          std::printf(" = %3.0f%% (cpu %3.0f%%) of measured read bandwidth", 100 * bytes / t1 / 1e9 / bandwidth[th].wall,
                      100 * bytes / c1 / 1e9 / bandwidth[th].cpu);
        std::printf("\n");
      }
      if (by_t.count(512) && by_t.count(1)) {
        std::printf("%-8s thr=%d prefill %6.1f tokens/s (cpu %6.1f)  (512 tokens)\n", dtype_name(dtype), th,
                    512 / model_time(512, false), 512 / model_time(512, true));
      }
    }
  }
  return 0;
}

#include "engine/cpu/matmul_kernels.h"  // PDCTL_MATMUL_AVX512
#if PDCTL_MATMUL_AVX512
#include "engine/cpu/simd_avx512.h"  // first: see there
#endif

#include "bench_machine.h"

#include <cstdlib>
#include <cstring>
#include <memory>

#include "engine/cpu/thread_pool.h"

namespace bench {
namespace {

// 24 independent accumulator chains: more than latency (4) x throughput (2 ymm-halves per
// cycle) needs, so the loop is bound by the FMA pipes only.
constexpr int kChains = 24;
constexpr int64_t kIters = 20'000'000;

#if PDCTL_MATMUL_AVX512
float fma_loop(int64_t iters) {
  __m512 acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = _mm512_set1_ps(static_cast<float>(j));
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-3f);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 24
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_fmadd_ps(acc[j], a, b);
  }
  __m512 s = acc[0];
  for (int j = 1; j < kChains; ++j) s = _mm512_add_ps(s, acc[j]);
  return _mm512_cvtss_f32(s);
}
constexpr double kFlopsPerIter = kChains * 16 * 2;
#else
float fma_loop(int64_t iters) {
  float acc[kChains][8];
  for (int j = 0; j < kChains; ++j)
    for (int l = 0; l < 8; ++l) acc[j][l] = static_cast<float>(j);
  for (int64_t i = 0; i < iters; ++i)
#pragma GCC unroll 24
    for (int j = 0; j < kChains; ++j)
      for (int l = 0; l < 8; ++l) acc[j][l] = acc[j][l] * 0.999f + 1e-3f;
  float s = 0;
  for (int j = 0; j < kChains; ++j) s += acc[j][0];
  return s;
}
constexpr double kFlopsPerIter = kChains * 8 * 2;
#endif

#if defined(__AVX512BF16__)
float bf16_loop(int64_t iters) {
  __m512 acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = _mm512_set1_ps(static_cast<float>(j));
  const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3a83);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 24
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_dpbf16_ps(acc[j], a, b);
  }
  __m512 s = acc[0];
  for (int j = 1; j < kChains; ++j) s = _mm512_add_ps(s, acc[j]);
  return _mm512_cvtss_f32(s);
}
#endif

#if defined(__AVX512VNNI__)
int vnni_loop(int64_t iters) {
  __m512i acc[kChains];
  for (int j = 0; j < kChains; ++j) acc[j] = _mm512_set1_epi32(j);
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 24
    for (int j = 0; j < kChains; ++j) acc[j] = _mm512_dpbusd_epi32(acc[j], a, b);
  }
  __m512i s = acc[0];
  for (int j = 1; j < kChains; ++j) s = _mm512_add_epi32(s, acc[j]);
  return _mm_cvtsi128_si32(_mm512_castsi512_si128(s));
}
#endif

// Runs loop(kIters) on every thread of the pool; returns ops per second over all threads.
template <class Loop>
Rate on_all(pdctl::engine::ThreadPool& pool, Loop loop, double ops_per_iter) {
  volatile float sink = 0;
  const Timing t = time_median(
      [&] { pool.run_on_all([&](int) { sink = sink + static_cast<float>(loop(kIters)); }); }, 5, 0, pool.size());
  const double ops = ops_per_iter * kIters * pool.size() / 1e9;
  return {ops / t.wall, ops / t.cpu};
}

}  // namespace

Peaks measure_peaks(pdctl::engine::ThreadPool& pool) {
  Peaks p;
  p.fma_gflops = on_all(pool, fma_loop, kFlopsPerIter);
#if defined(__AVX512BF16__)
  p.bf16_gflops = on_all(pool, bf16_loop, kChains * 32 * 2);
#endif
#if defined(__AVX512VNNI__)
  p.vnni_gops = on_all(pool, vnni_loop, kChains * 64 * 2);
#endif
  return p;
}

// Sums n floats from p. S = 1: one sequential stream. S = 8: like a GEMV over rows of 4 KiB,
// eight consecutive rows side by side, then the next eight.
template <int S>
float read_streams(const float* p, int64_t n) {
  constexpr int64_t kRow = S == 1 ? 16 : 1024;  // floats per row
  const int64_t blocks = n / (S * kRow);
#if PDCTL_MATMUL_AVX512
  __m512 s[S];
  for (auto& v : s) v = _mm512_setzero_ps();
  // One 64-byte line per row per step (two per step measured ~8% slower).
  for (int64_t b = 0; b < blocks; ++b) {
    const float* q = p + b * S * kRow;
    for (int64_t k = 0; k < kRow; k += 16)
      for (int j = 0; j < S; ++j) s[j] = _mm512_add_ps(s[j], _mm512_loadu_ps(q + j * kRow + k));
  }
  float tot = 0;
  for (auto& v : s) tot += pdctl::engine::kernels::avx512::hsum(v);
  return tot;
#else
  float acc[16] = {};
  for (int64_t b = 0; b < blocks; ++b) {
    const float* q = p + b * S * kRow;
    for (int64_t k = 0; k < kRow; k += 16)
      for (int j = 0; j < S; ++j)
        for (int l = 0; l < 16; ++l) acc[l] += q[j * kRow + k + l];
  }
  float tot = 0;
  for (float v : acc) tot += v;
  return tot;
#endif
}

Rate measure_read_bandwidth(pdctl::engine::ThreadPool& pool, int64_t bytes, int streams, int reps) {
  const int64_t n = bytes / 4;
  std::unique_ptr<float[]> buf(new float[static_cast<size_t>(n)]);
  // Touch every page from the thread that will read it (first-touch placement).
  const int threads = pool.size();
  pool.run_on_all([&](int i) {
    const int64_t b = n * i / threads, e = n * (i + 1) / threads;
    for (int64_t k = b; k < e; ++k) buf[k] = 1.0f;
  });
  // Each thread reads its part as one stream or as a GEMV reads its rows (eight at once).
  const int64_t len = n / threads / 8192 * 8192;
  volatile float sink = 0;
  auto read_all = [&] {
    pool.run_on_all([&](int i) {
      const float* p = buf.get() + n * i / threads;
      const float tot = streams == 1 ? read_streams<1>(p, len) : read_streams<8>(p, len);
      sink = sink + tot;
    });
  };
  const Timing t = time_median(read_all, reps, 0, threads);
  const double gb = static_cast<double>(len * threads) * 4 / 1e9;
  return {gb / t.wall, gb / t.cpu};
}

double measure_pool_round_trip_us(pdctl::engine::ThreadPool& pool, int calls) {
  std::vector<double> t;
  const int64_t n = pool.size();
  for (int batch = 0; batch < 11; ++batch) {
    const double t0 = now_s();
    for (int c = 0; c < calls; ++c) pool.parallel_for(n, [](int64_t, int64_t, int) {});
    t.push_back((now_s() - t0) / calls * 1e6);
  }
  return median(t);
}

}  // namespace bench

#pragma once
// What the machine can do, as ceilings for the matmul numbers: the FMA peak of a
// register-only loop, the read bandwidth of a buffer far larger than L3, and the round trip
// of an empty ThreadPool::parallel_for.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <vector>

namespace pdctl::engine {
class ThreadPool;
}

namespace bench {

inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// CPU seconds used by this process (all threads). On a machine shared with other jobs, the
// CPU time of a compute-bound call divided by its threads is close to its wall time on a
// quiet machine, while wall time also counts the time slices the other jobs took.
inline double cpu_s() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

struct Timing {
  double wall = 0;  // median seconds of one run
  double cpu = 0;   // median CPU seconds of one run divided by `threads`
};

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Runs f() once to warm up (unless min_reps is 1: runs of seconds), then until at least
// `min_reps` runs and `min_total_s` seconds (at most 200 runs); returns the medians of one run.
template <class F>
Timing time_median(F&& f, int min_reps, double min_total_s, int threads = 1) {
  if (min_reps > 1) f();
  std::vector<double> wall, cpu;
  double total = 0;
  while ((static_cast<int>(wall.size()) < min_reps || total < min_total_s) && wall.size() < 200) {
    const double t0 = now_s(), c0 = cpu_s();
    f();
    wall.push_back(now_s() - t0);
    cpu.push_back((cpu_s() - c0) / threads);
    total += wall.back();
  }
  return {median(wall), median(cpu)};
}

// Each as {by wall time, by CPU time}.
struct Rate {
  double wall = 0, cpu = 0;
};
struct Peaks {
  Rate fma_gflops;   // FP32 FMA, the pool's threads together
  Rate bf16_gflops;  // vdpbf16ps (2 flops per bf16 pair); 0 where not built
  Rate vnni_gops;    // vpdpbusd (2 ops per u8*s8 pair); 0 where not built
};
Peaks measure_peaks(pdctl::engine::ThreadPool& pool);

// GB/s streaming reads of `bytes` (split between the pool's threads, each reading its part as
// one sequential stream (streams = 1) or as eight 4 KiB rows side by side (8), like a GEMV);
// median of `reps`.
Rate measure_read_bandwidth(pdctl::engine::ThreadPool& pool, int64_t bytes, int streams, int reps);

// Median microseconds of one empty parallel_for(n = pool size) round trip.
double measure_pool_round_trip_us(pdctl::engine::ThreadPool& pool, int calls);

}  // namespace bench

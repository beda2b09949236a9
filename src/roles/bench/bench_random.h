#pragma once
// The random streams of sglang.bench_serving, reproduced: it seeds Python's `random` and
// numpy's legacy `np.random` with --seed, and both are MT19937. Drawing the same numbers in
// the same order gives the same lengths, shuffles and arrival gaps as sglang for a seed.
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace pdctl::roles {

// The Mersenne Twister MT19937 with both reference seedings (init_genrand and
// init_by_array); std::mt19937 has only the first.
class Mt19937 {
 public:
  explicit Mt19937(uint32_t seed) { seed_genrand(seed); }
  void seed_genrand(uint32_t seed);
  void seed_by_array(std::span<const uint32_t> key);
  uint32_t next_u32();
  // A double in [0, 1) with 53 random bits (genrand_res53).
  double next_double();

 private:
  void twist();
  static constexpr int kN = 624;
  uint32_t mt_[kN];
  int index_ = kN;
};

// numpy's legacy RandomState (np.random.seed / randint / random / exponential).
class NumpyRandom {
 public:
  explicit NumpyRandom(uint32_t seed) : mt_(seed) {}
  // np.random.randint(low, high): uniform in [low, high), by masked rejection.
  int64_t randint(int64_t low, int64_t high);
  // np.random.random(): uniform in [0, 1).
  double random() { return mt_.next_double(); }
  // np.random.exponential(scale).
  double exponential(double scale);

 private:
  Mt19937 mt_;
};

// CPython's random.Random (random.seed(int) / random() / shuffle / choices).
class PythonRandom {
 public:
  explicit PythonRandom(uint64_t seed);
  double random() { return mt_.next_double(); }
  // random.getrandbits(k) for 0 < k <= 32.
  uint32_t getrandbits(int k);
  // random._randbelow(n): uniform in [0, n), n > 0.
  uint64_t randbelow(uint64_t n);
  // random.shuffle(v).
  template <class T>
  void shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i-- > 1;) {
      size_t j = static_cast<size_t>(randbelow(i + 1));
      std::swap(v[i], v[j]);
    }
  }
  // One pick of random.choices(population): population[floor(random() * n)].
  size_t choice_index(size_t n) { return static_cast<size_t>(random() * static_cast<double>(n)); }

 private:
  Mt19937 mt_;
};

// Both streams, seeded as sglang seeds them; shared by the dataset and the arrival
// schedule so that the draws come in sglang's order.
struct BenchRng {
  explicit BenchRng(uint32_t seed) : np(seed), py(seed) {}
  NumpyRandom np;
  PythonRandom py;
};

}  // namespace pdctl::roles

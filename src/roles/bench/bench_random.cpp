#include "roles/bench/bench_random.h"

#include <cmath>

namespace pdctl::roles {

// The constants and seeding recurrences are those of the MT19937 reference (Matsumoto and
// Nishimura, mt19937ar), which numpy and CPython both use.
void Mt19937::seed_genrand(uint32_t seed) {
  mt_[0] = seed;
  for (int i = 1; i < kN; ++i) {
    mt_[i] = 1812433253u * (mt_[i - 1] ^ (mt_[i - 1] >> 30)) + static_cast<uint32_t>(i);
  }
  index_ = kN;
}

void Mt19937::seed_by_array(std::span<const uint32_t> key) {
  seed_genrand(19650218u);
  const int len = static_cast<int>(key.size());
  int i = 1;
  int j = 0;
  for (int k = kN > len ? kN : len; k > 0; --k) {
    mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1664525u)) + key[j] +
             static_cast<uint32_t>(j);
    ++i;
    ++j;
    if (i >= kN) {
      mt_[0] = mt_[kN - 1];
      i = 1;
    }
    if (j >= len) j = 0;
  }
  for (int k = kN - 1; k > 0; --k) {
    mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1566083941u)) -
             static_cast<uint32_t>(i);
    ++i;
    if (i >= kN) {
      mt_[0] = mt_[kN - 1];
      i = 1;
    }
  }
  mt_[0] = 0x80000000u;  // non-zero initial state
  index_ = kN;
}

void Mt19937::twist() {
  constexpr int kM = 397;
  constexpr uint32_t kMatrixA = 0x9908b0dfu;
  for (int i = 0; i < kN; ++i) {
    uint32_t y = (mt_[i] & 0x80000000u) | (mt_[(i + 1) % kN] & 0x7fffffffu);
    mt_[i] = mt_[(i + kM) % kN] ^ (y >> 1) ^ ((y & 1u) ? kMatrixA : 0u);
  }
  index_ = 0;
}

uint32_t Mt19937::next_u32() {
  if (index_ >= kN) twist();
  uint32_t y = mt_[index_++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= y >> 18;
  return y;
}

double Mt19937::next_double() {
  uint32_t a = next_u32() >> 5;
  uint32_t b = next_u32() >> 6;
  return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
}

int64_t NumpyRandom::randint(int64_t low, int64_t high) {
  // numpy draws nothing when the range holds a single value; keeping that keeps the
  // stream aligned with sglang's (range ratio 1.0 gives fixed lengths).
  const uint64_t rng = static_cast<uint64_t>(high - 1 - low);
  if (rng == 0) return low;
  if (rng <= 0xffffffffu) {
    if (rng == 0xffffffffu) return low + static_cast<int64_t>(mt_.next_u32());
    uint32_t mask = static_cast<uint32_t>(rng);
    mask |= mask >> 1;
    mask |= mask >> 2;
    mask |= mask >> 4;
    mask |= mask >> 8;
    mask |= mask >> 16;
    uint32_t v;
    while ((v = mt_.next_u32() & mask) > rng) {
    }
    return low + static_cast<int64_t>(v);
  }
  uint64_t mask = rng;
  mask |= mask >> 1;
  mask |= mask >> 2;
  mask |= mask >> 4;
  mask |= mask >> 8;
  mask |= mask >> 16;
  mask |= mask >> 32;
  uint64_t v;
  do {
    uint64_t hi = mt_.next_u32();
    v = ((hi << 32) | mt_.next_u32()) & mask;
  } while (v > rng);
  return low + static_cast<int64_t>(v);
}

double NumpyRandom::exponential(double scale) {
  return scale * -std::log(1.0 - mt_.next_double());
}

PythonRandom::PythonRandom(uint64_t seed) : mt_(0) {
  // random.seed(n) feeds |n| as 32-bit words, least significant first; 0 is one word.
  uint32_t key[2] = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
  mt_.seed_by_array(std::span<const uint32_t>(key, key[1] != 0 ? 2 : 1));
}

uint32_t PythonRandom::getrandbits(int k) { return mt_.next_u32() >> (32 - k); }

uint64_t PythonRandom::randbelow(uint64_t n) {
  int k = 0;
  for (uint64_t m = n; m != 0; m >>= 1) ++k;  // n.bit_length()
  if (k <= 32) {
    uint64_t r = getrandbits(k);
    while (r >= n) r = getrandbits(k);
    return r;
  }
  // getrandbits(k > 32) joins 32-bit words, least significant first.
  auto bits = [&] {
    uint64_t lo = mt_.next_u32();
    uint64_t hi = mt_.next_u32() >> (64 - k);
    return lo | (hi << 32);
  };
  uint64_t r = bits();
  while (r >= n) r = bits();
  return r;
}

}  // namespace pdctl::roles

// The random streams match CPython's `random` and numpy's legacy `np.random` bit for bit.
// Expected values were produced with CPython 3.11 and numpy 1.24 (the calls are quoted).
#include <doctest/doctest.h>

#include <random>
#include <vector>

#include "roles/bench/bench_random.h"

using pdctl::roles::Mt19937;
using pdctl::roles::NumpyRandom;
using pdctl::roles::PythonRandom;

TEST_CASE("MT19937 init_genrand agrees with std::mt19937") {
  Mt19937 mine(5489);
  std::mt19937 ref(5489);
  for (int i = 0; i < 2000; ++i) REQUIRE(mine.next_u32() == ref());
}

TEST_CASE("MT19937 init_by_array gives the reference output (mt19937ar.out)") {
  const uint32_t key[] = {0x123, 0x234, 0x345, 0x456};
  Mt19937 mt(0);
  mt.seed_by_array(key);
  CHECK(mt.next_u32() == 1067595299u);
  CHECK(mt.next_u32() == 955945823u);
  CHECK(mt.next_u32() == 477289528u);
  CHECK(mt.next_u32() == 4107218783u);
  CHECK(mt.next_u32() == 4228976476u);
}

TEST_CASE("PythonRandom matches CPython's random") {
  SUBCASE("random.seed(1); random.random() twice") {
    PythonRandom r(1);
    CHECK(r.random() == 0.13436424411240122);
    CHECK(r.random() == 0.8474337369372327);
  }
  SUBCASE("random.seed(0); random.random()") {
    PythonRandom r(0);
    CHECK(r.random() == 0.8444218515250481);
  }
  SUBCASE("random.seed(1); random.shuffle(list(range(10)))") {
    PythonRandom r(1);
    std::vector<int> v{0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    r.shuffle(v);
    CHECK(v == std::vector<int>{6, 8, 9, 7, 5, 3, 0, 4, 1, 2});
  }
  SUBCASE("a seed wider than 32 bits: random.seed(12345678901); getrandbits(32)") {
    PythonRandom r(12345678901ull);
    CHECK(r.getrandbits(32) == 4063089813u);
  }
  SUBCASE("random.seed(7); random.choices(range(100, 200), k=8)") {
    PythonRandom r(7);
    std::vector<size_t> got;
    for (int i = 0; i < 8; ++i) got.push_back(100 + r.choice_index(100));
    CHECK(got == std::vector<size_t>{132, 115, 165, 107, 153, 136, 105, 150});
  }
}

TEST_CASE("NumpyRandom matches numpy's legacy RandomState") {
  SUBCASE("seed 0: randint(0, 10, size=5)") {
    NumpyRandom r(0);
    std::vector<int64_t> got;
    for (int i = 0; i < 5; ++i) got.push_back(r.randint(0, 10));
    CHECK(got == std::vector<int64_t>{5, 0, 3, 3, 7});
  }
  SUBCASE("seed 1: randint(512, 1025, size=4) then exponential(1/4)") {
    NumpyRandom r(1);
    std::vector<int64_t> got;
    for (int i = 0; i < 4; ++i) got.push_back(r.randint(512, 1025));
    CHECK(got == std::vector<int64_t>{549, 747, 584, 656});
    CHECK(r.exponential(1 / 4.0) == 0.12628575314707763);
  }
  SUBCASE("a one-value range draws nothing: seed 5, randint(7, 8, 3) then randint(0, 3, 5)") {
    NumpyRandom r(5);
    for (int i = 0; i < 3; ++i) CHECK(r.randint(7, 8) == 7);
    std::vector<int64_t> got;
    for (int i = 0; i < 5; ++i) got.push_back(r.randint(0, 3));
    CHECK(got == std::vector<int64_t>{2, 1, 2, 2, 0});  // same as without the first call
  }
  SUBCASE("full 32-bit and wider ranges (seed 3)") {
    NumpyRandom a(3);
    CHECK(a.randint(0, int64_t{1} << 32) == 2365658986);
    CHECK(a.randint(0, int64_t{1} << 32) == 303761048);
    NumpyRandom b(3);
    CHECK(b.randint(0, int64_t{1} << 40) == 455570294424);
    CHECK(b.randint(0, int64_t{1} << 40) == 1073054410371);
  }
  SUBCASE("seed 2: random()") {
    NumpyRandom r(2);
    CHECK(r.random() == 0.43599490214200376);
  }
}

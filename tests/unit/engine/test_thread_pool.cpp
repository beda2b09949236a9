// ThreadPool: coverage of indices, the nested and concurrent-use rules in thread_pool.h, and
// that destruction joins (a pool destroyed with work pending or never used must not hang).
#include <doctest/doctest.h>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "engine/cpu/thread_pool.h"

using pdctl::engine::ThreadPool;
using pdctl::engine::ThreadPoolOptions;

TEST_CASE("thread pool: parallel_for covers every index exactly once, in contiguous ranges") {
  for (int threads : {1, 2, 3, 4}) {
    ThreadPool pool(threads);
    CHECK(pool.size() == threads);
    for (int64_t n : {0, 1, 2, 3, 7, 100, 1001}) {
      CAPTURE(threads);
      CAPTURE(n);
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      std::vector<std::atomic<int>> by_thread(static_cast<size_t>(threads));
      std::atomic<int> calls{0};
      pool.parallel_for(n, [&](int64_t b, int64_t e, int ti) {
        CHECK(b < e);
        CHECK(ti >= 0);
        CHECK(ti < threads);
        by_thread[static_cast<size_t>(ti)]++;
        calls++;
        for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
      });
      bool once = true;
      for (auto& h : hits) once &= h.load() == 1;
      CHECK(once);
      CHECK(calls.load() == std::min<int64_t>(n, threads));
      for (auto& c : by_thread) CHECK(c.load() <= 1);  // one range per thread
    }
  }
}

TEST_CASE("thread pool: run_on_all runs once on each thread, the caller taking index 0") {
  ThreadPool pool(3);
  std::vector<std::thread::id> ids(3);
  std::atomic<int> count{0};
  pool.run_on_all([&](int i) {
    ids[static_cast<size_t>(i)] = std::this_thread::get_id();
    count++;
  });
  CHECK(count.load() == 3);
  CHECK(ids[0] == std::this_thread::get_id());
  CHECK(std::set<std::thread::id>(ids.begin(), ids.end()).size() == 3);
}

TEST_CASE("thread pool: a nested call runs inline on the calling thread") {
  ThreadPool pool(3);
  std::atomic<int> inner_total{0};
  pool.parallel_for(3, [&](int64_t, int64_t, int) {
    const auto me = std::this_thread::get_id();
    pool.parallel_for(10, [&](int64_t b, int64_t e, int ti) {
      CHECK(std::this_thread::get_id() == me);
      CHECK(ti == 0);
      inner_total += static_cast<int>(e - b);
    });
  });
  CHECK(inner_total.load() == 30);
}

TEST_CASE("thread pool: concurrent callers take turns and all get complete results") {
  ThreadPool pool(2);
  std::vector<std::thread> callers;
  std::atomic<int> bad{0};
  for (int c = 0; c < 3; ++c) {
    callers.emplace_back([&] {
      for (int rep = 0; rep < 300; ++rep) {
        std::vector<int> v(64, 0);
        pool.parallel_for(64, [&](int64_t b, int64_t e, int) {
          for (int64_t i = b; i < e; ++i) v[static_cast<size_t>(i)] += 1;
        });
        for (int x : v) bad += x != 1;
      }
    });
  }
  for (auto& t : callers) t.join();
  CHECK(bad.load() == 0);
}

TEST_CASE("thread pool: many back-to-back calls, and destruction joins (used or not, pinned or not)") {
  for (int rep = 0; rep < 20; ++rep) {
    ThreadPool unused(3);
    ThreadPool pinned(2, ThreadPoolOptions{.pin_workers = true});
    std::atomic<int64_t> sum{0};
    for (int i = 0; i < 200; ++i)
      pinned.parallel_for(2, [&](int64_t b, int64_t e, int) { sum += e - b; });
    CHECK(sum.load() == 400);
  }
}

TEST_CASE("thread pool: parallel_chunks runs every chunk exactly once, thread indices distinct per thread") {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 5, 64, 1000}) {
      for (int64_t chunk : {1, 3, 64, 5000}) {
        CAPTURE(threads);
        CAPTURE(n);
        CAPTURE(chunk);
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::vector<std::atomic<int>> busy(static_cast<size_t>(threads));
        std::atomic<int> bad{0};
        pool.parallel_chunks(n, chunk, [&](int64_t b, int64_t e, int ti) {
          if (ti < 0 || ti >= threads || b >= e || e - b > chunk || b % chunk != 0) {
            bad++;
            return;
          }
          // Two threads never run under the same index at once (per-thread scratch is safe).
          if (busy[static_cast<size_t>(ti)]++ != 0) bad++;
          for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
          busy[static_cast<size_t>(ti)]--;
        });
        CHECK(bad.load() == 0);
        bool once = true;
        for (auto& h : hits) once &= h.load() == 1;
        CHECK(once);
      }
    }
  }
}

TEST_CASE("thread pool: dynamic and static jobs back to back (late workers skip closed jobs, never run one twice)") {
  ThreadPool pool(3);
  std::atomic<int64_t> total{0};
  int64_t expect = 0;
  for (int rep = 0; rep < 2000; ++rep) {
    if (rep % 3 == 0) {
      std::vector<std::atomic<int>> seen(3);
      pool.run_on_all([&](int i) { seen[static_cast<size_t>(i)]++; });
      for (auto& s : seen) CHECK(s.load() == 1);
    } else {
      const int64_t n = 1 + rep % 17;
      pool.parallel_chunks(n, 1 + rep % 4, [&](int64_t b, int64_t e, int) { total += e - b; });
      expect += n;
    }
  }
  CHECK(total.load() == expect);
}

TEST_CASE("thread pool: parallel_chunks from concurrent callers and nested inside a job") {
  ThreadPool pool(2);
  std::vector<std::thread> callers;
  std::atomic<int> bad{0};
  for (int c = 0; c < 3; ++c) {
    callers.emplace_back([&] {
      for (int rep = 0; rep < 200; ++rep) {
        std::vector<int> v(100, 0);
        pool.parallel_chunks(100, 7, [&](int64_t b, int64_t e, int) {
          for (int64_t i = b; i < e; ++i) v[static_cast<size_t>(i)] += 1;
          // Nested: runs inline on this thread.
          int inner = 0;
          pool.parallel_chunks(10, 2, [&](int64_t ib, int64_t ie, int ti) { inner += static_cast<int>(ie - ib) + ti; });
          bad += inner != 10;
        });
        for (int x : v) bad += x != 1;
      }
    });
  }
  for (auto& t : callers) t.join();
  CHECK(bad.load() == 0);
}

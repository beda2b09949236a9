// Load-balancing policies: random, round_robin, power_of_two, cache_aware.
#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "roles/router/basic_policies.h"
#include "roles/router/cache_aware_policy.h"
#include "roles/router/router_core.h"

using namespace pdctl::router;
using namespace std::chrono_literals;

namespace {

const TimePoint t0 = TimePoint{} + 1000h;

struct Pool {
  WorkerRegistry registry{HealthConfig{}, CircuitBreakerConfig{}};
  std::vector<std::shared_ptr<Worker>> workers;
  std::vector<LoadGuard> held;

  explicit Pool(int n) {
    for (int i = 0; i < n; ++i) {
      workers.push_back(registry.add({"http://w" + std::to_string(i) + ":8000"}, t0).value());
    }
  }
  // Puts `n` requests in flight on worker i.
  void load(int i, int n) {
    for (int k = 0; k < n; ++k) held.emplace_back(workers[i]);
  }
};

}  // namespace

TEST_CASE("round_robin: takes turns, spreading evenly") {
  Pool pool(3);
  RoundRobinPolicy rr;
  std::vector<size_t> seq;
  std::map<size_t, int> counts;
  for (int i = 0; i < 300; ++i) {
    size_t idx = rr.select(pool.workers, "", t0).index;
    if (i < 6) seq.push_back(idx);
    ++counts[idx];
  }
  CHECK(seq == std::vector<size_t>{0, 1, 2, 0, 1, 2});
  CHECK(counts == std::map<size_t, int>{{0, 100}, {1, 100}, {2, 100}});
}

TEST_CASE("round_robin through the core skips unhealthy workers and open breakers") {
  RouterCoreConfig cfg;
  cfg.policy = "round_robin";
  cfg.breaker.failure_threshold = 2;
  auto core = RouterCore::create(cfg, 1, t0).value();
  for (int i = 0; i < 4; ++i) REQUIRE(core->add_worker({"http://w" + std::to_string(i)}, t0));
  auto w1 = core->find_worker("http://w1");
  auto w2 = core->find_worker("http://w2");
  for (int i = 0; i < 3; ++i) core->record_health_check(*w1, false);  // threshold 3
  REQUIRE_FALSE(w1->healthy());
  core->record_outcome(*w2, AttemptResult::http(500), t0);
  core->record_outcome(*w2, AttemptResult::http(503), t0);
  REQUIRE(w2->breaker().current() == CircuitState::kOpen);

  std::vector<std::string> seq;
  for (int i = 0; i < 6; ++i) seq.push_back(core->pick_worker("", t0)->worker->url());
  CHECK(seq == std::vector<std::string>{"http://w0", "http://w3", "http://w0", "http://w3",
                                        "http://w0", "http://w3"});
}

TEST_CASE("random: only candidates, all of them in time") {
  Pool pool(4);
  RandomPolicy p(42);
  std::map<size_t, int> counts;
  for (int i = 0; i < 400; ++i) ++counts[p.select(pool.workers, "", t0).index];
  CHECK(counts.size() == 4);
  for (auto [idx, n] : counts) {
    CHECK(idx < 4);
    CHECK(n > 50);
  }
}

TEST_CASE("power_of_two: the lower of the two loads wins") {
  SUBCASE("two candidates: always the less loaded one") {
    Pool pool(2);
    pool.load(0, 5);
    pool.load(1, 1);
    PowerOfTwoPolicy p(3);
    for (int i = 0; i < 100; ++i) CHECK(p.select(pool.workers, "", t0).index == 1);
  }
  SUBCASE("three candidates: the most loaded one never wins, the least loaded one most often") {
    Pool pool(3);
    pool.load(0, 10);
    pool.load(1, 5);
    PowerOfTwoPolicy p(5);
    std::map<size_t, int> counts;
    for (int i = 0; i < 300; ++i) ++counts[p.select(pool.workers, "", t0).index];
    CHECK(counts[0] == 0);
    CHECK(counts[2] > counts[1]);
    CHECK(counts[1] > 0);  // it wins when paired with worker 0
  }
  SUBCASE("the worker-reported load, when known, beats the in-flight count") {
    Pool pool(2);
    pool.load(1, 3);                            // in flight: w0 0, w1 3
    pool.workers[0]->set_reported_load(100);   // but w0 reports 100
    pool.workers[1]->set_reported_load(10);
    PowerOfTwoPolicy p(9);
    for (int i = 0; i < 50; ++i) CHECK(p.select(pool.workers, "", t0).index == 1);
    pool.workers[0]->set_reported_load(std::nullopt);  // unknown again: in flight 0 < 10
    for (int i = 0; i < 50; ++i) CHECK(p.select(pool.workers, "", t0).index == 0);
  }
  SUBCASE("one candidate") {
    Pool pool(1);
    PowerOfTwoPolicy p(1);
    CHECK(p.select(pool.workers, "", t0).index == 0);
  }
}

namespace {

CacheAwareConfig cache_config(double threshold, int64_t abs, double rel) {
  CacheAwareConfig c;
  c.cache_threshold = threshold;
  c.balance_abs_threshold = abs;
  c.balance_rel_threshold = rel;
  return c;
}

struct CachePool : Pool {
  CacheAwarePolicy policy;
  CachePool(int n, CacheAwareConfig c) : Pool(n), policy(c) {
    for (auto& w : workers) policy.on_worker_added(*w);
  }
  Selection route(std::string_view text) { return policy.select(workers, text, t0); }
};

const std::string kSystem =
    "You are a helpful assistant. Answer the question below precisely and briefly, citing "
    "the relevant facts. Question: ";

}  // namespace

TEST_CASE("cache_aware: a shared long prefix goes to the same worker; a new one to the emptiest tree") {
  CachePool p(2, cache_config(0.3, 64, 1.5));
  Selection first = p.route(kSystem + "what is the capital of France?");
  CHECK(first.decision == Decision::kCacheMiss);
  CHECK(first.index == 0);  // both trees empty: the first candidate
  for (const char* q : {"how far is the moon?", "who wrote Hamlet?", "what is 2 + 2?"}) {
    Selection s = p.route(kSystem + q);
    CHECK(s.decision == Decision::kCacheHit);
    CHECK(s.index == 0);
    CHECK(s.matched_chars >= kSystem.size());
  }
  // Unrelated text: a miss, routed to the smallest tree (worker 1, still empty).
  Selection other = p.route("Translate into German: good morning");
  CHECK(other.decision == Decision::kCacheMiss);
  CHECK(other.index == 1);
  CHECK(p.route("Translate into German: good night").index == 1);
  CHECK(p.policy.cache_hits() == 4);
  CHECK(p.policy.cache_misses() == 2);
  CHECK(p.policy.hit_rate() == doctest::Approx(4.0 / 6.0));
}

TEST_CASE("cache_aware: the match rate must exceed --cache-threshold") {
  CachePool p(2, cache_config(0.5, 64, 1.5));
  REQUIRE(p.route("abcdefghij").index == 0);
  // 5 of 10 characters: a rate of exactly 0.5 is not above 0.5 -> miss, smallest tree.
  Selection at = p.route("abcdeXXXXX");
  CHECK(at.matched_chars == 5);
  CHECK(at.decision == Decision::kCacheMiss);
  CHECK(at.index == 1);
  // 6 of 10: above -> the worker holding "abcdef".
  Selection above = p.route("abcdefYYYY");
  CHECK(above.matched_chars == 6);
  CHECK(above.decision == Decision::kCacheHit);
  CHECK(above.index == 0);
  // An empty text never hits.
  CHECK(p.route("").decision == Decision::kCacheMiss);
}

TEST_CASE("cache_aware: imbalance thresholds, boundaries included") {
  // The tree sends "cached text" to worker 0; imbalance must override that.
  auto run = [](int64_t abs, double rel, int load0, int load1) {
    CachePool p(2, cache_config(0.1, abs, rel));
    REQUIRE(p.route("cached text").index == 0);
    p.load(0, load0);
    p.load(1, load1);
    return p.route("cached text");
  };
  SUBCASE("absolute: a difference equal to the threshold is balanced") {
    Selection s = run(2, 1.5, 2, 0);  // 2 - 0 = 2, not > 2
    CHECK(s.decision == Decision::kCacheHit);
    CHECK(s.index == 0);
  }
  SUBCASE("absolute: one more is imbalanced -> least loaded") {
    Selection s = run(2, 1.5, 3, 0);  // 3 > 2 and 3 > 0 * 1.5
    CHECK(s.decision == Decision::kLoadBalance);
    CHECK(s.index == 1);
    CHECK(s.max_load == 3);
    CHECK(s.min_load == 0);
  }
  SUBCASE("relative: max equal to min * rel is balanced") {
    Selection s = run(1, 1.5, 6, 4);  // 6 - 4 > 1, but 6 > 4 * 1.5 = 6 is false
    CHECK(s.decision == Decision::kCacheHit);
  }
  SUBCASE("relative: above it is imbalanced") {
    Selection s = run(1, 1.5, 7, 4);  // 7 > 6
    CHECK(s.decision == Decision::kLoadBalance);
    CHECK(s.index == 1);
  }
  SUBCASE("both conditions are needed") {
    CHECK(run(10, 1.5, 8, 0).decision == Decision::kCacheHit);   // relative only
    CHECK(run(1, 10.0, 8, 2).decision == Decision::kCacheHit);   // absolute only
  }
}

TEST_CASE("cache_aware: a balance decision still teaches the tree") {
  CachePool p(2, cache_config(0.3, 0, 1.0));
  p.load(0, 1);
  Selection s = p.route("balanced away");
  CHECK(s.decision == Decision::kLoadBalance);
  CHECK(s.index == 1);
  p.held.clear();
  Selection again = p.route("balanced away, again");
  CHECK(again.decision == Decision::kCacheHit);
  CHECK(again.index == 1);
}

TEST_CASE("cache_aware: only available candidates are matched") {
  CachePool p(2, cache_config(0.3, 64, 1.5));
  REQUIRE(p.route(kSystem + "q1").index == 0);
  // Worker 0 is not a candidate now (unhealthy or open): its cached prefix is ignored.
  std::vector<std::shared_ptr<Worker>> only1{p.workers[1]};
  Selection s = p.policy.select(only1, kSystem + "q2", t0);
  CHECK(s.index == 0);  // index into `only1`
  CHECK(s.decision == Decision::kCacheMiss);
}

TEST_CASE("cache_aware: removing a worker removes its tenant") {
  CachePool p(2, cache_config(0.3, 64, 1.5));
  REQUIRE(p.route(kSystem + "q1").index == 0);
  REQUIRE(p.policy.tree().has_tenant("http://w0:8000"));
  p.policy.on_worker_removed(*p.workers[0]);
  CHECK_FALSE(p.policy.tree().has_tenant("http://w0:8000"));
  CHECK(p.policy.tree().node_count() == 0);
  std::vector<std::shared_ptr<Worker>> rest{p.workers[1]};
  CHECK(p.policy.select(rest, kSystem + "q1", t0).decision == Decision::kCacheMiss);
}

TEST_CASE("cache_aware: maintain() evicts every --eviction-interval-secs down to --max-tree-size") {
  CacheAwareConfig c = cache_config(0.3, 64, 1.5);
  c.max_tree_size = 20;
  c.eviction_interval = 10s;
  CachePool p(2, c);
  p.policy.maintain(t0);  // starts the interval
  for (int i = 0; i < 20; ++i) p.route("request number " + std::to_string(i) + " with some text");
  auto over = [&] {
    for (auto& w : p.workers) {
      if (p.policy.tree().tenant_size(w->url()) > 20) return true;
    }
    return false;
  };
  REQUIRE(over());
  p.policy.maintain(t0 + 9s);
  CHECK(over());
  p.policy.maintain(t0 + 10s);
  CHECK_FALSE(over());
}

TEST_CASE("make_policy knows the four names") {
  for (const char* n : {"random", "round_robin", "power_of_two", "cache_aware"}) {
    auto p = make_policy(n, CacheAwareConfig{}, 1);
    REQUIRE(p);
    CHECK((*p)->name() == n);
    CHECK((*p)->needs_request_text() == (std::string(n) == "cache_aware"));
  }
  CHECK(make_policy("least_load", CacheAwareConfig{}, 1).status().code() == pdctl::Errc::kInvalidArgument);
}

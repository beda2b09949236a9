// EventLoop: post() ordering across threads, stop semantics, timers, signals.
#include <doctest/doctest.h>

#include <csignal>

#include <uv.h>

#include "net/event_loop.h"
#include "net_test_util.h"

using namespace nettest;
using namespace pdctl::net;

TEST_CASE("event loop: posts from several threads run in per-thread order, none lost") {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;
  LoopThread lt;
  std::vector<int> last(kThreads, -1);
  int total = 0;
  bool ordered = true;
  std::vector<std::thread> producers;
  for (int t = 0; t < kThreads; ++t) {
    producers.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        REQUIRE(lt.loop().post([&, t, i] {
          if (last[t] != i - 1) ordered = false;
          last[t] = i;
          total++;
        }));
      }
    });
  }
  for (auto& p : producers) p.join();
  // A post made after the others from this thread runs after all of them.
  CHECK(lt.call([&] { return total; }) == kThreads * kPerThread);
  CHECK(ordered);
}

TEST_CASE("event loop: posts from one thread keep their order with the loop's own posts") {
  LoopThread lt;
  std::vector<int> seen;
  // Hold the loop until every post is queued, so that "after 11..999" is well defined.
  Event all_posted;
  REQUIRE(lt.loop().post([&] { REQUIRE(all_posted.wait()); }));
  for (int i = 0; i < 1000; ++i) {
    REQUIRE(lt.loop().post([&, i] {
      seen.push_back(i);
      if (i == 10) lt.loop().post([&] { seen.push_back(-1); });  // queued behind 11..999
    }));
  }
  all_posted.set();
  lt.call([] {});  // runs after 0..999; the -1 posted meanwhile is queued behind it
  auto seen_copy = lt.call([&] { return seen; });
  REQUIRE(seen_copy.size() == 1001);
  for (int i = 0; i < 1000; ++i) CHECK(seen_copy[i] == i);
  CHECK(seen_copy[1000] == -1);
}

TEST_CASE("event loop: post after stop returns false and drops the callback; accepted posts run") {
  auto loop = std::make_unique<EventLoop>();
  int ran = 0;
  REQUIRE(loop->post([&] { ran++; }));  // before run(): runs once the loop runs
  auto token = std::make_shared<int>(1);
  std::thread t([&] { loop->run(); });
  loop->stop();
  t.join();
  CHECK(ran == 1);
  CHECK(loop->stopping());
  std::weak_ptr<int> weak = token;
  CHECK_FALSE(loop->post([token = std::move(token)] {}));
  CHECK(weak.expired());  // destroyed on the caller's thread
  loop.reset();
}

TEST_CASE("event loop: posting while the loop shuts down never crashes and never loses an accepted post") {
  std::atomic<int> accepted{0};
  std::atomic<int> ran{0};
  std::atomic<bool> go{true};
  auto loop = std::make_unique<EventLoop>();
  std::thread runner([&] { loop->run(); });
  std::vector<std::thread> producers;
  for (int t = 0; t < 3; ++t) {
    producers.emplace_back([&] {
      while (go.load()) {
        if (loop->post([&] { ran++; })) {
          accepted++;
        } else {
          break;  // stopped: every later post is refused too
        }
      }
    });
  }
  while (accepted.load() < 1000) std::this_thread::yield();
  loop->stop();
  runner.join();
  go = false;
  for (auto& p : producers) p.join();
  CHECK(ran.load() == accepted.load());
  loop.reset();
}

TEST_CASE("event loop: stop closes every handle, including ones made outside src/net") {
  EventLoop loop;
  uv_timer_t raw;  // a foreign handle: closed by stop() without a callback
  uv_timer_init(loop.uv(), &raw);
  uv_timer_start(&raw, [](uv_timer_t*) {}, 100000, 0);
  Timer t(loop);
  t.start(std::chrono::hours(1), [] {});
  std::thread runner([&] { loop.run(); });
  loop.stop();
  runner.join();
  CHECK_FALSE(t.active());
  CHECK_FALSE(t.start(std::chrono::milliseconds(1), [] {}));  // inert after the stop
  CHECK(loop.close().is_ok());
}

TEST_CASE("event loop: one-shot, repeating and cancelled timers") {
  LoopThread lt;
  Event once, repeated;
  int ticks = 0;
  int cancelled_runs = 0;
  std::unique_ptr<Timer> t1, t2, t3;
  lt.call([&] {
    t1 = std::make_unique<Timer>(lt.loop());
    t2 = std::make_unique<Timer>(lt.loop());
    t3 = std::make_unique<Timer>(lt.loop());
    t1->start(std::chrono::milliseconds(5), [&] { once.set(); });
    t2->start(std::chrono::milliseconds(1), std::chrono::milliseconds(1), [&] {
      if (++ticks == 5) {
        t2->cancel();
        repeated.set();
      }
    });
    t3->start(std::chrono::milliseconds(1), [&] { cancelled_runs++; });
    t3->cancel();
  });
  CHECK(once.wait());
  CHECK(repeated.wait());
  lt.call([&] {
    CHECK(ticks == 5);
    CHECK_FALSE(t2->active());
    CHECK(cancelled_runs == 0);
  });
  Event destroyed;
  lt.call([&] {
    // A callback that destroys its own timer.
    t3->start(std::chrono::milliseconds(1), [&] {
      t3.reset();
      destroyed.set();
    });
  });
  CHECK(destroyed.wait());
  lt.call([&] {
    t1.reset();
    t2.reset();
  });
}

TEST_CASE("event loop: SIGTERM reaches a SignalWatcher on the loop thread") {
  LoopThread lt;
  Event got;
  std::atomic<int> which{0};
  std::unique_ptr<SignalWatcher> w;
  lt.call([&] {
    w = std::make_unique<SignalWatcher>(lt.loop(), std::initializer_list<int>{SIGINT, SIGTERM}, [&](int sig) {
      which = sig;
      got.set();
    });
  });
  ::kill(::getpid(), SIGTERM);
  CHECK(got.wait());
  CHECK(which.load() == SIGTERM);
  lt.call([&] { w.reset(); });
}

TEST_CASE("event loop: close() reports a handle made after the stop") {
  EventLoop loop;
  std::thread runner([&] { loop.run(); });
  loop.stop();
  runner.join();
  uv_timer_t late;
  uv_timer_init(loop.uv(), &late);
  pdctl::Status st = loop.close();
  CHECK(st.code() == pdctl::Errc::kInternal);
  CHECK(loop.close().code() == pdctl::Errc::kInternal);  // the first result, again
}

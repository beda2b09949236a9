// The serving benchmark's request driver against a fake SGLang worker in this process (the
// project's HttpServer on a loop thread of its own): records, warmup, failures,
// --max-concurrency, arrival times and interruption by a signal.
#include <doctest/doctest.h>

#include <signal.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "net/http_server.h"
#include "net/net_test_util.h"
#include "roles/bench/bench_driver.h"

using namespace pdctl::roles;
using namespace pdctl::net;
using nettest::LoopThread;

namespace {

// How the fake answers its n-th request (0-based, warmup included).
enum class Answer { kStream, kWhole, kHttpError, kErrorEvent, kHold, kHoldAndInterrupt };

class FakeWorker {
 public:
  // `delay_ms` before each answer (0: at once); `answer(n)` picks the kind.
  FakeWorker(std::function<Answer(int)> answer, int delay_ms = 0)
      : answer_(std::move(answer)), delay_ms_(delay_ms) {
    port_ = thread_.call([&] {
      server_ = std::make_unique<HttpServer>(thread_.loop());
      server_->route("POST", "/generate", [this](const Request& req, Response r) { on_request(req, r); });
      REQUIRE(server_->listen().is_ok());
      return server_->port();
    });
  }
  ~FakeWorker() {
    thread_.call([&] {
      timers_.clear();
      held_.clear();
      server_.reset();
      return 0;
    });
  }

  uint16_t port() const { return port_; }
  int served() { return thread_.call([&] { return served_; }); }
  int max_in_flight() { return thread_.call([&] { return max_in_flight_; }); }

 private:
  void on_request(const Request& req, Response r) {
    const int n = served_++;
    max_in_flight_ = std::max(max_in_flight_, ++in_flight_);
    auto body = nlohmann::json::parse(req.body);
    const int tokens = body["sampling_params"]["max_new_tokens"];
    const Answer kind = answer_(n);
    auto reply = [this, r, tokens, kind]() mutable {
      --in_flight_;
      answer(r, tokens, kind);
    };
    if (delay_ms_ == 0 || kind == Answer::kHold || kind == Answer::kHoldAndInterrupt) {
      reply();
      return;
    }
    timers_.push_back(std::make_unique<Timer>(thread_.loop()));
    timers_.back()->start(std::chrono::milliseconds(delay_ms_), reply);
  }

  void answer(Response& r, int tokens, Answer kind) {
    auto chunk = [](int k) {
      return R"({"text":")" + std::string(static_cast<size_t>(k), 'x') +
             R"(","meta_info":{"completion_tokens":)" + std::to_string(k) + "}}";
    };
    switch (kind) {
      case Answer::kStream:
        r.begin_sse();
        for (int k = 1; k <= tokens; ++k) r.write_sse(chunk(k));
        r.end_sse();
        return;
      case Answer::kWhole:
        r.send(200, chunk(tokens));
        return;
      case Answer::kHttpError:
        r.send_error(500, "the fake failed this one");
        return;
      case Answer::kErrorEvent:
        r.begin_sse();
        r.write_sse(chunk(1));
        r.write_sse(R"({"error":{"message":"out of memory"}})");
        r.end_sse();
        return;
      case Answer::kHold:
        held_.push_back(r);
        return;
      case Answer::kHoldAndInterrupt:
        held_.push_back(r);
        ::kill(::getpid(), SIGINT);
        return;
    }
  }

  std::function<Answer(int)> answer_;
  int delay_ms_;
  LoopThread thread_;
  std::unique_ptr<HttpServer> server_;
  std::vector<std::unique_ptr<Timer>> timers_;
  std::vector<Response> held_;
  int served_ = 0;
  int in_flight_ = 0;
  int max_in_flight_ = 0;
  uint16_t port_ = 0;
};

DriverConfig config(const FakeWorker& w, bool stream = true) {
  DriverConfig c;
  auto t = server_target("http://127.0.0.1:" + std::to_string(w.port()));
  REQUIRE(t.has_value());
  c.target = *t;
  c.path = "/generate";
  c.backend = Backend::kSglang;
  c.stream = stream;
  return c;
}

PreparedRequest request(int prompt_len, int output_len) {
  return {R"({"text":"hello","sampling_params":{"max_new_tokens":)" + std::to_string(output_len) + "}}",
          prompt_len, output_len};
}

std::vector<PreparedRequest> requests(size_t n, int prompt_len, int output_len) {
  std::vector<PreparedRequest> out;
  for (size_t i = 0; i < n; ++i) out.push_back(request(prompt_len, output_len));
  return out;
}

}  // namespace

TEST_CASE("streamed answers become records; the warmup is not measured") {
  FakeWorker w([](int) { return Answer::kStream; });
  DriverRun run = drive_requests(config(w), request(7, 3), 2, requests(8, 7, 5), std::vector<double>(8, 0.0));
  REQUIRE(run.warmup.is_ok());
  CHECK_FALSE(run.interrupted);
  CHECK(run.finished == 8);
  CHECK(w.served() == 10);
  CHECK(run.duration_s > 0);
  REQUIRE(run.records.size() == 8);
  for (const auto& r : run.records) {
    CHECK(r.finished);
    CHECK(r.success);
    CHECK(r.prompt_len == 7);
    CHECK(r.output_len == 5);
    CHECK(r.itl_s.size() == 4);
    CHECK(r.generated_text == "xxxxx");
    CHECK(r.ttft_s > 0);
    CHECK(r.latency_s >= r.ttft_s);
    CHECK(r.latency_s <= run.duration_s);
  }
}

TEST_CASE("whole (non-streamed) answers: TTFT is the latency") {
  FakeWorker w([](int) { return Answer::kWhole; });
  DriverRun run = drive_requests(config(w, /*stream=*/false), request(4, 2), 1, requests(5, 4, 6),
                                 std::vector<double>(5, 0.0));
  REQUIRE(run.warmup.is_ok());
  CHECK(run.finished == 5);
  for (const auto& r : run.records) {
    CHECK(r.success);
    CHECK(r.output_len == 6);
    CHECK(r.itl_s.empty());
    CHECK(r.ttft_s == r.latency_s);
    CHECK(r.latency_s > 0);
  }
}

TEST_CASE("a streaming request answered with a plain JSON body is read as a whole answer") {
  FakeWorker w([](int) { return Answer::kWhole; });
  DriverRun run = drive_requests(config(w, /*stream=*/true), request(4, 2), 1, requests(3, 4, 6),
                                 std::vector<double>(3, 0.0));
  REQUIRE(run.warmup.is_ok());
  for (const auto& r : run.records) {
    CHECK(r.success);
    CHECK(r.output_len == 6);
    CHECK(r.ttft_s == r.latency_s);
  }
}

TEST_CASE("failed requests are counted with their error, and the run goes on") {
  // Request 0 is the warmup; then every third fails with HTTP 500, every third with an
  // error event in the middle of its stream.
  FakeWorker w([](int n) {
    if (n == 0) return Answer::kStream;
    if (n % 3 == 0) return Answer::kHttpError;
    if (n % 3 == 1) return Answer::kErrorEvent;
    return Answer::kStream;
  });
  DriverRun run = drive_requests(config(w), request(3, 2), 1, requests(9, 3, 4), std::vector<double>(9, 0.0));
  REQUIRE(run.warmup.is_ok());
  CHECK(run.finished == 9);
  int ok = 0, http = 0, event = 0;
  for (const auto& r : run.records) {
    CHECK(r.finished);
    if (r.success) {
      ++ok;
    } else if (r.error.starts_with("Internal Server Error: ")) {
      ++http;
      CHECK(r.error.find("the fake failed this one") != std::string::npos);
    } else {
      ++event;
      CHECK(r.error == "server error: out of memory");
    }
  }
  CHECK(ok == 3);
  CHECK(http == 3);
  CHECK(event == 3);
}

TEST_CASE("a warmup without success stops before the timed run") {
  FakeWorker w([](int) { return Answer::kHttpError; });
  DriverRun run = drive_requests(config(w), request(3, 2), 3, requests(4, 3, 4), std::vector<double>(4, 0.0));
  REQUIRE_FALSE(run.warmup.is_ok());
  CHECK(run.warmup.message().starts_with("Warmup failed"));
  CHECK(run.finished == 0);
  CHECK(w.served() == 3);
}

TEST_CASE("--max-concurrency: never more requests in flight than the limit") {
  FakeWorker w([](int) { return Answer::kStream; }, /*delay_ms=*/20);
  DriverConfig c = config(w);
  c.max_concurrency = 3;
  DriverRun run = drive_requests(c, request(3, 2), 0, requests(12, 3, 2), std::vector<double>(12, 0.0));
  CHECK(run.finished == 12);
  CHECK(w.max_in_flight() == 3);
  // Four waves of three, each answered after 20 ms.
  CHECK(run.duration_s >= 0.08);
}

TEST_CASE("requests leave at their arrival times, not before") {
  FakeWorker w([](int) { return Answer::kStream; });
  const std::vector<double> arrivals = {0.0, 0.05, 0.12};
  DriverRun run = drive_requests(config(w), request(3, 2), 0, requests(3, 3, 2), arrivals);
  REQUIRE(run.finished == 3);
  for (size_t i = 0; i < 3; ++i) CHECK(run.records[i].start_s - run.start_s >= arrivals[i]);
  CHECK(run.duration_s >= 0.12);
}

TEST_CASE("a signal stops the run; the finished requests are kept, those in flight are not") {
  // One at a time: requests 0..3 of the run are answered, the 5th holds and the fake raises
  // SIGINT, which the driver watches while it runs.
  FakeWorker w([](int n) { return n == 5 ? Answer::kHoldAndInterrupt : Answer::kStream; });
  DriverConfig c = config(w);
  c.max_concurrency = 1;
  DriverRun run = drive_requests(c, request(3, 2), 1, requests(10, 3, 2), std::vector<double>(10, 0.0));
  CHECK(run.warmup.is_ok());
  CHECK(run.interrupted);
  CHECK(run.signal == SIGINT);
  CHECK(run.finished == 4);
  for (size_t i = 0; i < run.records.size(); ++i) CHECK(run.records[i].finished == (i < 4));
  CHECK(run.duration_s > 0);
}

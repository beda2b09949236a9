// Throughput of the HTTP stack: a closed-loop client (its own loop thread) against a server
// (another loop thread), small requests on keep-alive connections. Skipped by default -
// speed is reported, never asserted. Run with:
//   build/tests/unit_net -tc='bench*' --no-skip
// Environment: PDCTL_BENCH_SECONDS (default 3), PDCTL_BENCH_CONCURRENCY (default 64).
#include <doctest/doctest.h>

#include <cstdlib>

#include <spdlog/spdlog.h>

#include "net/http_client.h"
#include "net/http_server.h"
#include "net_test_util.h"

using namespace nettest;
using namespace pdctl::net;

namespace {

int env_int(const char* name, int def) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : def;
}

struct Driver {
  HttpClient* client;
  Endpoint to;
  uint64_t completed = 0;
  uint64_t failed = 0;
  bool stopping = false;
  int in_flight = 0;
  Event* all_done;

  void issue() {
    ClientRequest req;
    req.method = "POST";
    req.target = "/v1/echo";
    req.body = R"({"prompt":"hello","max_tokens":1})";
    req.headers.add("Content-Type", "application/json");
    ResponseHandlers h;
    h.on_done = [this](const pdctl::Status& st) {
      if (st.is_ok()) {
        completed++;
      } else {
        failed++;
      }
      if (stopping) {
        if (--in_flight == 0) all_done->set();
        return;
      }
      issue();
    };
    client->request(to, std::move(req), std::move(h));
  }
};

}  // namespace

TEST_CASE("bench: small keep-alive requests per second, client and server on two loop threads" * doctest::skip()) {
  int seconds = env_int("PDCTL_BENCH_SECONDS", 3);
  int concurrency = env_int("PDCTL_BENCH_CONCURRENCY", 64);
  spdlog::set_level(spdlog::level::warn);
  LoopThread server_thread, client_thread;
  std::unique_ptr<HttpServer> server;
  uint16_t port = server_thread.call([&] {
    ServerOptions o;
    o.max_pipelined = 1;
    server = std::make_unique<HttpServer>(server_thread.loop(), o);
    server->route("POST", "/v1/echo", [](const Request& req, Response r) { r.send(200, req.body); });
    REQUIRE(server->listen().is_ok());
    return server->port();
  });
  std::unique_ptr<HttpClient> client;
  Driver d;
  Event all_done;
  d.all_done = &all_done;
  client_thread.call([&] {
    ClientOptions co;
    co.max_connections_per_upstream = static_cast<size_t>(concurrency);
    client = std::make_unique<HttpClient>(client_thread.loop(), co);
    d.client = client.get();
    d.to = {"127.0.0.1", port};
    d.in_flight = concurrency;
    for (int i = 0; i < concurrency; ++i) d.issue();
  });
  // Warm-up second, then the measured window.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  uint64_t start_count = client_thread.call([&] { return d.completed; });
  auto t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  uint64_t end_count = client_thread.call([&] { return d.completed; });
  double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  client_thread.call([&] { d.stopping = true; });
  REQUIRE(all_done.wait());
  MESSAGE("concurrency " << concurrency << ": " << static_cast<uint64_t>((end_count - start_count) / elapsed)
                         << " requests/s (" << d.failed << " failed)");
  CHECK(d.failed == 0);
  client_thread.call([&] { client.reset(); });
  server_thread.call([&] { server.reset(); });
  spdlog::set_level(spdlog::level::info);
}

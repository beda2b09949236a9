// The router's HTTP layer: its pure helpers (upstream URLs, transport errors, headers,
// prefill's logprobs), and the router on an event loop in front of an in-process worker
// (backpressure both ways, response framing).
#include <doctest/doctest.h>

#include <atomic>
#include <memory>
#include <string>

#include "net/http_server.h"
#include "net/net_test_util.h"
#include "roles/router/pd_dispatch.h"
#include "roles/router/router_server.h"
#include "roles/router/upstream.h"

using namespace pdctl::router;
using namespace std::chrono_literals;
using nlohmann::json;
using pdctl::Status;
namespace net = pdctl::net;

TEST_CASE("upstream: a worker URL becomes an endpoint and a path prefix") {
  auto up = parse_upstream("http://10.0.0.5:30001");
  REQUIRE(up);
  CHECK(up->endpoint == net::Endpoint{"10.0.0.5", 30001});
  CHECK(up->prefix.empty());
  up = parse_upstream("http://host:8080/sglang/");
  REQUIRE(up);
  CHECK(up->endpoint == net::Endpoint{"host", 8080});
  CHECK(up->prefix == "/sglang");
  up = parse_upstream("http://[::1]:9000");
  REQUIRE(up);
  CHECK(up->endpoint.host == "::1");
  CHECK(parse_upstream("https://secure:443").status().code() == pdctl::Errc::kUnsupported);

  UpstreamCache cache;
  auto a = cache.get("http://h:1");
  auto b = cache.get("http://h:1");
  REQUIRE(a);
  REQUIRE(b);
  CHECK(*a == *b);  // parsed once
  CHECK_FALSE(cache.get("ftp://h:1"));
}

TEST_CASE("upstream: transport errors map onto the core's AttemptResult") {
  CHECK(classify_transport(Status::unavailable("connect to h:1: connection refused")) == TransportError::kRefused);
  CHECK(classify_transport(Status::unavailable("read from h:1: connection reset by peer")) == TransportError::kReset);
  CHECK(classify_transport(Status::unavailable("connection to h:1 closed before the response ended")) ==
        TransportError::kReset);
  CHECK(classify_transport(Status::timeout("no response head")) == TransportError::kTimeout);
  CHECK(classify_transport(Status::corrupt("malformed response")) == TransportError::kOther);
  CHECK(attempt_result(Status::ok(), 503).http_status == 503);
  CHECK(attempt_result(Status::ok(), 503).transport == TransportError::kNone);
  CHECK(gateway_status(TransportError::kTimeout) == 504);
  CHECK(gateway_status(TransportError::kRefused) == 502);
}

TEST_CASE("upstream: hop-by-hop and framing headers do not cross the proxy") {
  net::Headers in{{"Content-Type", "application/json"}, {"Authorization", "Bearer k"}, {"Connection", "keep-alive"},
                  {"Host", "router:30000"}, {"Content-Length", "12"}, {"Transfer-Encoding", "chunked"},
                  {"Expect", "100-continue"}, {"X-Request-Id", "abc"}, {"Keep-Alive", "timeout=5"}};
  net::Headers out = forward_request_headers(in);
  CHECK(out.size() == 3);
  CHECK(out.get("Content-Type") == "application/json");
  CHECK(out.get("Authorization") == "Bearer k");
  CHECK(out.get("X-Request-Id") == "abc");

  net::Headers resp{{"Content-Type", "text/event-stream; charset=utf-8"}, {"Content-Length", "5"}, {"Date", "x"},
                    {"Connection", "close"}, {"X-Trace", "t"}};
  net::Headers fwd = forward_response_headers(resp);
  CHECK(fwd.size() == 2);
  CHECK(is_event_stream(fwd));
  CHECK_FALSE(is_event_stream(net::Headers{{"Content-Type", "application/json"}}));
  CHECK(sse_error_event(502, "gone") == "data: " + net::error_json(502, "gone") + "\n\n");
  CHECK(json::parse(net::error_json(502, "gone"))["error"]["code"] == 502);
}

TEST_CASE("pd: prefill's input logprobs come from a JSON reply or the first SSE event carrying them") {
  json lp = json::array({json::array({nullptr, 1, nullptr}), json::array({-0.5, 2, nullptr})});
  json whole = {{"text", "x"}, {"meta_info", {{"input_token_logprobs", lp}}}};
  auto got = prefill_logprobs_from_body(whole.dump(), false);
  REQUIRE(got);
  CHECK(*got == lp);

  std::string sse = "data: {\"text\":\"a\",\"meta_info\":{}}\n\n" + net::sse_event(whole.dump()) +
                    net::sse_event(json{{"meta_info", {{"input_token_logprobs", json::array()}}}}.dump()) +
                    "data: [DONE]\n\n";
  got = prefill_logprobs_from_body(sse, true);
  REQUIRE(got);
  CHECK(*got == lp);
  CHECK_FALSE(prefill_logprobs_from_body("not json", false));
  CHECK_FALSE(prefill_logprobs_from_body("data: [DONE]\n\n", true));
}

namespace {

using nettest::Event;
using nettest::LoopThread;
using nettest::RawClient;

// A worker that streams `total` bytes of SSE as fast as the router takes them.
struct Flood {
  net::Response r;
  size_t total = 0;
  size_t written = 0;
  std::string chunk;
  Event* paused = nullptr;

  void run() {
    if (chunk.empty()) chunk = "data: " + std::string(64 * 1024 - 8, 'x') + "\n\n";
    while (written < total) {
      net::WriteResult w = r.write(chunk);
      if (w == net::WriteResult::kClosed) return;
      written += chunk.size();
      if (w == net::WriteResult::kPaused) {
        if (paused != nullptr) paused->set();
        return;
      }
    }
    r.end();
  }
};

// An in-process worker and a router in regular mode in front of it, on one loop.
struct RouterFixture {
  LoopThread lt;
  std::unique_ptr<net::HttpServer> worker;
  std::unique_ptr<RouterServer> router;
  uint16_t port = 0;

  explicit RouterFixture(const std::function<void(net::HttpServer&)>& routes) {
    lt.call([&] {
      worker = std::make_unique<net::HttpServer>(lt.loop(), net::ServerOptions{});
      routes(*worker);
      REQUIRE(worker->listen().is_ok());
      pdctl::roles::RouterOptions o;
      o.port = 0;
      o.worker_urls = {"http://127.0.0.1:" + std::to_string(worker->port())};
      o.policy = "round_robin";
      o.worker_startup_timeout_secs = 0;
      auto r = RouterServer::create(lt.loop(), o, 7);
      REQUIRE(r);
      router = std::move(*r);
      REQUIRE(router->start({}).is_ok());
      port = router->port();
    });
  }
  ~RouterFixture() {
    lt.call([&] {
      router.reset();
      worker.reset();
    });
  }
};

}  // namespace

TEST_CASE("router: a client that stops reading pauses the worker's stream; all of it arrives once it reads") {
  // 64 MiB is four times the router's own --max-write-queue (16 MiB): had the router kept
  // reading the worker while its client did not, it would have dropped the connection.
  constexpr size_t kTotal = 64u << 20;
  Event paused;
  std::shared_ptr<Flood> flood;
  RouterFixture f([&](net::HttpServer& s) {
    s.route("POST", "/generate", [&](const net::Request&, net::Response r) {
      flood = std::make_shared<Flood>();
      flood->r = r;
      flood->total = kTotal;
      flood->paused = &paused;
      r.begin_sse();
      r.on_writable([p = flood.get()] { p->run(); });
      flood->run();
    });
  });
  RawClient c(f.port);
  c.set_recv_buffer(64 * 1024);
  REQUIRE(c.send(nettest::post_request("/generate", "{\"text\":\"x\",\"stream\":true}")));
  REQUIRE(paused.wait());
  size_t at_pause = f.lt.call([&] { return flood->written; });
  CHECK(at_pause < kTotal / 2);

  nettest::RawResponse r = c.read_response(std::chrono::seconds(60));
  REQUIRE(r.complete);
  CHECK(r.status == 200);
  CHECK(r.headers.get("Content-Type") == "text/event-stream");
  CHECK(r.body.size() == kTotal);
  f.lt.call([&] {
    CHECK(flood->written == kTotal);
    flood.reset();
  });
}

TEST_CASE("router: a whole reply keeps the worker's status, type and length; the connection is reused") {
  std::atomic<int> calls{0};
  RouterFixture f([&](net::HttpServer& s) {
    s.route("POST", "/v1/completions", [&](const net::Request& req, net::Response r) {
      calls++;
      r.send(201, "{\"echo\":" + req.body + "}", {{"Content-Type", "application/x-test"}, {"X-Worker", "w"}});
    });
  });
  RawClient c(f.port);
  for (int i = 0; i < 3; ++i) {
    REQUIRE(c.send(nettest::post_request("/v1/completions", "{\"n\":" + std::to_string(i) + "}")));
    nettest::RawResponse r = c.read_response();
    REQUIRE(r.complete);
    CHECK(r.status == 201);
    CHECK(r.headers.get("Content-Type") == "application/x-test");
    CHECK(r.headers.get("X-Worker") == "w");
    CHECK(r.headers.has("Content-Length"));
    CHECK(r.body == "{\"echo\":{\"n\":" + std::to_string(i) + "}}");
  }
  CHECK(calls == 3);
}

namespace {

struct Node : DeadlineNode {
  std::vector<int>* fired = nullptr;
  int id = 0;
  std::function<void()> then;
  void on_deadline() override {
    fired->push_back(id);
    if (then) then();
  }
};

}  // namespace

TEST_CASE("deadlines: one timer fires every due node in order; removed nodes never fire") {
  LoopThread lt;
  std::vector<int> fired;
  Event all_done;
  auto list = lt.call([&] { return std::make_unique<DeadlineList>(lt.loop()); });
  std::vector<std::unique_ptr<Node>> nodes;
  for (int i = 0; i < 5; ++i) {
    nodes.push_back(std::make_unique<Node>());
    nodes.back()->fired = &fired;
    nodes.back()->id = i;
  }
  lt.call([&] {
    TimePoint now = Clock::now();
    list->add(*nodes[0], now + 30ms);
    list->add(*nodes[1], now + 40ms);
    list->add(*nodes[2], now + 10ms);  // earlier than the tail: placed in order
    list->add(*nodes[3], now + 50ms);
    list->add(*nodes[4], now + 60ms);
    CHECK(nodes[2]->linked());
    list->remove(*nodes[1]);
    list->remove(*nodes[1]);  // idempotent
    CHECK_FALSE(nodes[1]->linked());
    // A callback that removes a later node and re-adds itself.
    nodes[0]->then = [&] {
      list->remove(*nodes[3]);
      nodes[0]->then = nullptr;
      list->add(*nodes[0], Clock::now() + 5ms);
    };
    nodes[4]->then = [&] { all_done.set(); };
  });
  REQUIRE(all_done.wait());
  lt.call([&] {
    CHECK(fired == std::vector<int>{2, 0, 0, 4});
    CHECK(list->empty());
    list.reset();
  });
}

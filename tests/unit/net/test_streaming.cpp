// Streamed responses: SSE end to end, backpressure against a client that does not read,
// client disconnects, graceful shutdown, and stopping a loop under live traffic.
#include <doctest/doctest.h>

#include <csignal>

#include <nlohmann/json.hpp>

#include "client_fixture.h"
#include "net/sse.h"

using namespace nettest;
using namespace pdctl::net;

TEST_CASE("sse: events streamed by the server arrive whole through the client's parser") {
  constexpr int kEvents = 30;
  std::unique_ptr<Timer> tick;
  ClientFixture f([&](HttpServer& s) {
    s.route("POST", "/v1/completions", [&](const Request&, Response r) {
      r.begin_sse();
      tick = std::make_unique<Timer>(f.lt.loop());
      auto i = std::make_shared<int>(0);
      tick->start(std::chrono::milliseconds(1), std::chrono::milliseconds(1), [r, i, &tick]() mutable {
        if (*i == kEvents) {
          r.end_sse();
          tick->cancel();
          return;
        }
        std::string ev = sse_event(nlohmann::json{{"i", *i}, {"text", "tok\n" + std::to_string(*i)}}.dump());
        // Split each event at an awkward place: the client must join it back.
        size_t cut = 1 + static_cast<size_t>(*i) % (ev.size() - 1);
        r.write(std::string_view(ev).substr(0, cut));
        r.write(std::string_view(ev).substr(cut));
        ++*i;
      });
    });
  });
  Event done;
  std::vector<std::string> datas;
  std::optional<pdctl::Status> status;
  std::string content_type;
  SseParser parser;
  f.lt.call([&] {
    ClientRequest req;
    req.method = "POST";
    req.target = "/v1/completions";
    req.body = R"({"stream":true})";
    ResponseHandlers h;
    h.on_head = [&](const ResponseHead& head) { content_type = std::string(head.headers.get("Content-Type")); };
    h.on_body = [&](std::string_view bytes) {
      REQUIRE(parser.feed(bytes, [&](const SseEvent& e) { datas.push_back(e.data); }).is_ok());
    };
    h.on_done = [&](const pdctl::Status& st) {
      status = st;
      done.set();
    };
    f.client->request(f.ep(), req, h);
  });
  REQUIRE(done.wait());
  CHECK(status->is_ok());
  CHECK(content_type == "text/event-stream");
  REQUIRE(datas.size() == kEvents + 1);
  for (int i = 0; i < kEvents; ++i) {
    auto j = nlohmann::json::parse(datas[i]);
    CHECK(j["i"] == i);
    CHECK(j["text"] == "tok\n" + std::to_string(i));
  }
  CHECK(datas.back() == "[DONE]");
  f.lt.call([&] { tick.reset(); });
}

namespace {

// A producer that honours backpressure: writes until kPaused, resumes on on_writable.
struct Pump {
  Response r;
  size_t total = 0;
  size_t written = 0;
  size_t max_queued = 0;
  int pauses = 0;
  Event* first_pause = nullptr;
  std::string chunk = std::string(64 * 1024, 'z');

  void run() {
    while (written < total) {
      WriteResult res = r.write(chunk);
      written += chunk.size();
      max_queued = std::max(max_queued, r.queued_bytes());
      if (res == WriteResult::kClosed) return;
      if (res == WriteResult::kPaused) {
        if (pauses++ == 0) first_pause->set();
        return;  // on_writable calls run() again
      }
    }
    r.end();
  }
};

}  // namespace

TEST_CASE("backpressure: a client that stops reading pauses the producer; queued bytes stay bounded") {
  ServerOptions so;
  so.write_high_water = 256 * 1024;
  constexpr size_t kTotal = 24u << 20;
  Event first_pause;
  std::shared_ptr<Pump> pump;
  ClientFixture f(
      [&](HttpServer& s) {
        s.route("GET", "/flood", [&](const Request&, Response r) {
          pump = std::make_shared<Pump>();
          pump->r = r;
          pump->total = kTotal;
          pump->first_pause = &first_pause;
          r.begin_stream(200, {{"Content-Type", "application/octet-stream"}});
          r.on_writable([p = pump.get()] { p->run(); });
          pump->run();
        });
      },
      {}, so);
  RawClient c(f.port);
  c.set_recv_buffer(64 * 1024);
  REQUIRE(c.send(get_request("/flood")));
  // The client reads nothing: the kernel buffers fill, then the server's queue, then the
  // producer is told to pause.
  REQUIRE(first_pause.wait());
  f.lt.call([&] {
    CHECK(pump->written < kTotal);
    CHECK(pump->r.queued_bytes() >= so.write_high_water);
    CHECK(pump->max_queued <= so.write_high_water + pump->chunk.size() + 64);
  });
  // Now read everything: on_writable resumes the producer until the end.
  RawResponse r = c.read_response(std::chrono::seconds(60));
  REQUIRE(r.complete);
  CHECK(r.body.size() == kTotal);
  f.lt.call([&] {
    CHECK(pump->written == kTotal);
    CHECK(pump->r.finished());
    CHECK(pump->max_queued <= so.write_high_water + pump->chunk.size() + 64);
    pump.reset();
  });
}

TEST_CASE("backpressure: a producer that ignores kPaused has its connection aborted at max_write_queue") {
  ServerOptions so;
  so.write_high_water = 64 * 1024;
  so.max_write_queue = 1u << 20;
  Event closed;
  size_t written = 0, max_queued = 0;
  WriteResult last = WriteResult::kOk;
  Response kept;
  ClientFixture f(
      [&](HttpServer& s) {
        s.route("GET", "/flood", [&](const Request&, Response r) {
          r.on_close([&] { closed.set(); });
          r.begin_stream(200);
          std::string chunk(64 * 1024, 'y');
          while (written < (256u << 20)) {  // far more than the kernel and the limit hold
            last = r.write(chunk);
            if (last == WriteResult::kClosed) break;
            written += chunk.size();
            max_queued = std::max(max_queued, r.queued_bytes());
          }
          kept = r;
        });
      },
      {}, so);
  RawClient c(f.port);
  c.set_recv_buffer(64 * 1024);
  REQUIRE(c.send(get_request("/flood")));
  REQUIRE(closed.wait());
  f.lt.call([&] {
    CHECK(last == WriteResult::kClosed);
    CHECK(written < (256u << 20));
    CHECK(max_queued <= so.max_write_queue + 64 * 1024 + 64);
    CHECK(kept.closed());
    kept = Response();
  });
  CHECK(c.wait_closed());
}

TEST_CASE("disconnect: a client that goes away mid-stream fires the server's close callback") {
  Event closed, streaming;
  Response held;
  ClientFixture f([&](HttpServer& s) {
    s.route("GET", "/sse", [&](const Request&, Response r) {
      r.on_close([&] { closed.set(); });
      r.begin_sse();
      r.write_sse("{\"t\":1}");
      held = r;
      streaming.set();
    });
  });
  {
    RawClient c(f.port);
    REQUIRE(c.send(get_request("/sse")));
    REQUIRE(streaming.wait());
    std::string got;
    while (got.find("data: ") == std::string::npos) REQUIRE(c.read_some(got) > 0);
  }  // closed here
  CHECK(closed.wait());
  f.lt.call([&] {
    CHECK(held.closed());
    CHECK_FALSE(held.finished());
    CHECK(held.write_sse("{\"t\":2}") == WriteResult::kClosed);
    held = Response();
  });
}

TEST_CASE("shutdown: idle connections close, new ones are refused, in-flight responses finish") {
  Event handled, done;
  Response held;
  ClientFixture f([&](HttpServer& s) {
    s.route("GET", "/health", [](const Request&, Response r) { r.send(200, "ok"); });
    s.route("GET", "/slow", [&](const Request&, Response r) {
      held = r;
      handled.set();
    });
  });
  RawClient idle(f.port);
  REQUIRE(idle.send(get_request("/health")));
  REQUIRE(idle.read_response().status == 200);
  RawClient busy(f.port);
  REQUIRE(busy.send(get_request("/slow")));
  REQUIRE(handled.wait());

  f.lt.call([&] { f.server->shutdown(std::chrono::seconds(10), [&] { done.set(); }); });
  CHECK(idle.wait_closed());
  CHECK(eventually([&] { return !RawClient(f.port).connected(); }));
  CHECK_FALSE(done.is_set());

  f.lt.call([&] { held.send(200, "finished"); });
  RawResponse r = busy.read_response();
  CHECK(r.status == 200);
  CHECK(r.body == "finished");
  CHECK(r.headers.get("Connection") == "close");
  CHECK(busy.wait_closed());
  CHECK(done.wait());
  f.lt.call([&] {
    CHECK(f.server->connection_count() == 0);
    held = Response();
  });
}

TEST_CASE("shutdown: what is still running at the deadline is aborted, then on_done runs") {
  Event handled, closed, done;
  Response held;
  ClientFixture f([&](HttpServer& s) {
    s.route("GET", "/hang", [&](const Request&, Response r) {
      r.on_close([&] { closed.set(); });
      held = r;
      handled.set();
    });
  });
  RawClient c(f.port);
  REQUIRE(c.send(get_request("/hang")));
  REQUIRE(handled.wait());
  f.lt.call([&] { f.server->shutdown(std::chrono::milliseconds(200), [&] { done.set(); }); });
  CHECK(done.wait());
  CHECK(closed.is_set());  // on_close runs before on_done
  CHECK(c.wait_closed());
  f.lt.call([&] { held = Response(); });
}

TEST_CASE("loop stop: servers, clients and timers still alive are closed; destroying them later is safe") {
  auto loop = std::make_unique<EventLoop>();
  std::thread runner([&] { loop->run(); });
  std::unique_ptr<HttpServer> server;
  std::unique_ptr<HttpClient> client;
  std::unique_ptr<Timer> timer;
  Response held;
  Event handled;
  std::promise<uint16_t> port;
  REQUIRE(loop->post([&] {
    server = std::make_unique<HttpServer>(*loop);
    server->route("GET", "/hang", [&](const Request&, Response r) {
      held = r;
      handled.set();
    });
    REQUIRE(server->listen().is_ok());
    client = std::make_unique<HttpClient>(*loop);
    timer = std::make_unique<Timer>(*loop);
    timer->start(std::chrono::hours(1), [] {});
    ClientRequest req;
    req.target = "/hang";
    client->fetch({"127.0.0.1", server->port()}, req, [](pdctl::Result<HttpResponse>) {});
    port.set_value(server->port());
  }));
  auto fut = port.get_future();
  REQUIRE(fut.wait_for(kDeadline) == std::future_status::ready);
  RawClient idle(fut.get());
  REQUIRE(handled.wait());
  loop->stop();
  runner.join();
  // Inert now: every handle was closed by the stop.
  CHECK(held.closed());
  CHECK(held.write("x") == WriteResult::kClosed);
  held = Response();
  timer.reset();
  client.reset();
  server.reset();
  CHECK(loop->close().is_ok());
  loop.reset();
}

TEST_CASE("shutdown: the roles' pattern - SIGTERM, graceful shutdown, loop exits") {
  EventLoop loop;
  HttpServer server(loop);
  server.route("GET", "/health", [](const Request&, Response r) { r.send(200, "ok"); });
  REQUIRE(server.listen().is_ok());
  SignalWatcher signals(loop, {SIGINT, SIGTERM},
                        [&](int) { server.shutdown(std::chrono::seconds(5), [&] { loop.stop(); }); });
  uint16_t port = server.port();
  std::promise<void> exited;
  std::thread runner([&] {
    loop.run();
    exited.set_value();
  });
  {
    RawClient c(port);
    REQUIRE(c.send(get_request("/health")));
    CHECK(c.read_response().status == 200);
    ::kill(::getpid(), SIGTERM);
    CHECK(c.wait_closed());  // the idle keep-alive connection is closed
  }
  CHECK(exited.get_future().wait_for(kDeadline) == std::future_status::ready);
  runner.join();
}

TEST_CASE("callbacks that capture their own Response or RequestHandle do not leak") {
  std::weak_ptr<int> server_token, client_token;
  ClientFixture f([&](HttpServer& s) {
    s.route("GET", "/own", [&](const Request&, Response r) {
      auto token = std::make_shared<int>(1);
      server_token = token;
      r.on_close([r, token] {});  // a cycle until the response finishes
      r.on_writable([r, token] {});
      r.send(200, "ok");
    });
    s.route("GET", "/stream", [&](const Request&, Response r) {
      r.begin_sse();
      r.write_sse("1");
      r.on_close([r] {});
    });
  });
  CHECK(f.get("/own")->body == "ok");
  f.lt.call([&] { CHECK(server_token.expired()); });

  Event cancelled;
  f.lt.call([&] {
    auto token = std::make_shared<int>(2);
    client_token = token;
    auto handle = std::make_shared<RequestHandle>();
    ClientRequest req;
    req.target = "/stream";
    ResponseHandlers h;
    h.on_body = [handle, token, &cancelled](std::string_view) {
      handle->cancel();  // from inside its own callback
      cancelled.set();
    };
    h.on_done = [handle, token](const pdctl::Status&) {};
    *handle = f.client->request(f.ep(), req, h);
  });
  REQUIRE(cancelled.wait());
  f.lt.call([&] { CHECK(client_token.expired()); });
}

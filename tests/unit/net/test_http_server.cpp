// The HTTP server against a raw socket: framing, keep-alive, pipelining, limits, errors.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "net/http_server.h"
#include "server_fixture.h"

using namespace nettest;
using namespace pdctl::net;
using json = nlohmann::json;

namespace {

void add_basic_routes(HttpServer& s) {
  s.route("GET", "/health", [](const Request&, Response r) { r.send(200, "ok", {{"Content-Type", "text/plain"}}); });
  s.route("POST", "/echo", [](const Request& req, Response r) {
    json j{{"body", req.body}, {"method", req.method}, {"query", req.query_param("q").value_or("")}};
    r.send(200, j.dump());
  });
  s.route("DELETE", "/workers/{url}",
          [](const Request& req, Response r) { r.send(200, std::string(req.param("url")), {{"Content-Type", "text/plain"}}); });
  s.route("GET", "/files/{rest...}",
          [](const Request& req, Response r) { r.send(200, std::string(req.param("rest")), {{"Content-Type", "text/plain"}}); });
}

// The one error shape of the stack.
void check_error_body(const RawResponse& r, int status) {
  CHECK(r.status == status);
  CHECK(r.headers.get("Content-Type") == "application/json");
  json j = json::parse(r.body);
  CHECK(j["error"]["code"] == status);
  CHECK(j["error"]["message"].is_string());
  CHECK(j["error"]["type"].is_string());
}

}  // namespace

TEST_CASE("server: keep-alive connection serves several requests") {
  ServerFixture f(add_basic_routes);
  RawClient c(f.port);
  REQUIRE(c.connected());
  for (int i = 0; i < 3; ++i) {
    REQUIRE(c.send(get_request("/health")));
    RawResponse r = c.read_response();
    REQUIRE(r.complete);
    CHECK(r.status == 200);
    CHECK(r.body == "ok");
    CHECK_FALSE(r.headers.has("Connection"));
  }
  CHECK(f.lt.call([&] { return f.server->connection_count(); }) == 1);
}

TEST_CASE("server: Connection: close and HTTP/1.0 close after the response") {
  ServerFixture f(add_basic_routes);
  {
    RawClient c(f.port);
    REQUIRE(c.send(get_request("/health", "Connection: close\r\n")));
    RawResponse r = c.read_response();
    CHECK(r.status == 200);
    CHECK(r.headers.get("Connection") == "close");
    CHECK(c.wait_closed());
  }
  {
    RawClient c(f.port);
    REQUIRE(c.send("GET /health HTTP/1.0\r\n\r\n"));
    RawResponse r = c.read_response();
    CHECK(r.status == 200);
    CHECK(c.wait_closed());
  }
  {
    RawClient c(f.port);
    REQUIRE(c.send("GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    RawResponse r = c.read_response();
    CHECK(r.status == 200);
    CHECK(r.headers.get("Connection") == "keep-alive");
    REQUIRE(c.send("GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    CHECK(c.read_response().status == 200);
  }
}

TEST_CASE("server: pipelined responses keep request order when the first answers later") {
  std::vector<std::string> handled;
  std::unique_ptr<Timer> timer;
  ServerFixture f([&](HttpServer& s) {
    s.route("GET", "/slow", [&](const Request&, Response r) {
      handled.push_back("slow");
      timer = std::make_unique<Timer>(f.lt.loop());
      // Answers on a later loop iteration, after /fast has answered.
      timer->start(std::chrono::milliseconds(50), [r]() mutable { r.send(200, "slow-body"); });
    });
    s.route("GET", "/fast", [&](const Request&, Response r) {
      handled.push_back("fast");
      r.send(200, "fast-body");
    });
  });
  RawClient c(f.port);
  REQUIRE(c.send(get_request("/slow") + get_request("/fast") + get_request("/fast")));
  RawResponse a = c.read_response();
  RawResponse b = c.read_response();
  RawResponse d = c.read_response();
  CHECK(a.body == "slow-body");
  CHECK(b.body == "fast-body");
  CHECK(d.body == "fast-body");
  f.lt.call([&] {
    CHECK(handled == std::vector<std::string>{"slow", "fast", "fast"});
    timer.reset();
  });
}

TEST_CASE("server: request bodies with Content-Length and chunked encoding") {
  ServerFixture f(add_basic_routes);
  RawClient c(f.port);
  REQUIRE(c.send(post_request("/echo?q=a%20b", "hello")));
  RawResponse r = c.read_response();
  REQUIRE(r.status == 200);
  json j = json::parse(r.body);
  CHECK(j["body"] == "hello");
  CHECK(j["method"] == "POST");
  CHECK(j["query"] == "a b");

  REQUIRE(c.send("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\n"));
  r = c.read_response();
  REQUIRE(r.status == 200);
  CHECK(json::parse(r.body)["body"] == "hello, world");
}

TEST_CASE("server: Expect: 100-continue is answered before the body is sent") {
  ServerFixture f(add_basic_routes);
  RawClient c(f.port);
  REQUIRE(c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"));
  RawResponse interim = c.read_response();
  CHECK(interim.status == 100);
  REQUIRE(c.send("data"));
  RawResponse r = c.read_response();
  CHECK(r.status == 200);
  CHECK(json::parse(r.body)["body"] == "data");
}

TEST_CASE("server: path parameters are percent-decoded, the rest parameter spans slashes") {
  ServerFixture f(add_basic_routes);
  RawClient c(f.port);
  REQUIRE(c.send("DELETE /workers/http%3A%2F%2F10.0.0.1%3A30001 HTTP/1.1\r\nHost: t\r\n\r\n"));
  RawResponse r = c.read_response();
  CHECK(r.status == 200);
  CHECK(r.body == "http://10.0.0.1:30001");
  REQUIRE(c.send(get_request("/files/a/b%20c/d")));
  r = c.read_response();
  CHECK(r.body == "a/b c/d");
  REQUIRE(c.send("DELETE /workers/bad%zz HTTP/1.1\r\nHost: t\r\n\r\n"));
  check_error_body(c.read_response(), 400);
}

TEST_CASE("server: 404 and 405 carry the JSON error body, 405 an Allow header") {
  ServerFixture f([](HttpServer& s) {
    add_basic_routes(s);
    s.route("PUT", "/health", [](const Request&, Response r) { r.send(204, ""); });
  });
  RawClient c(f.port);
  REQUIRE(c.send(get_request("/nope")));
  RawResponse r = c.read_response();
  check_error_body(r, 404);
  REQUIRE(c.send("POST /health HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"));
  r = c.read_response();
  check_error_body(r, 405);
  CHECK(r.headers.get("Allow") == "GET, PUT");
  // Errors of routing keep the connection usable.
  REQUIRE(c.send(get_request("/health")));
  CHECK(c.read_response().status == 200);
}

TEST_CASE("server: 413 as soon as a too large Content-Length is seen") {
  ServerOptions o;
  o.max_payload_size = 1000;
  ServerFixture f(add_basic_routes, o);
  RawClient c(f.port);
  // Headers only: the server must not wait for 10 GB.
  REQUIRE(c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000000\r\n\r\n"));
  RawResponse r = c.read_response();
  check_error_body(r, 413);
  CHECK(r.headers.get("Connection") == "close");
  CHECK(c.wait_closed());
}

TEST_CASE("server: 413 when a chunked body passes the limit") {
  ServerOptions o;
  o.max_payload_size = 1000;
  ServerFixture f(add_basic_routes, o);
  RawClient c(f.port);
  std::string chunk(600, 'x');
  REQUIRE(c.send("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n" + chunk + "\r\n258\r\n" +
                 chunk + "\r\n"));
  RawResponse r = c.read_response();
  check_error_body(r, 413);
  CHECK(c.wait_closed());
}

TEST_CASE("server: 431 for headers past the limit") {
  ServerOptions o;
  o.max_header_bytes = 2048;
  ServerFixture f(add_basic_routes, o);
  RawClient c(f.port);
  REQUIRE(c.send(get_request("/health", "X-Big: " + std::string(4096, 'a') + "\r\n")));
  RawResponse r = c.read_response();
  check_error_body(r, 431);
  CHECK(c.wait_closed());
}

TEST_CASE("server: malformed requests get 400, and the server keeps serving") {
  ServerFixture f(add_basic_routes);
  const char* bad[] = {
      "HELLO WORLD\r\n\r\n",
      "GET / HTTP/9.9\r\n\r\n",
      "GET /health HTTP/1.1\r\nBad Header\r\n\r\n",
      "POST /echo HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
      "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      "\x01\x02\x03\x04\r\n\r\n",
  };
  for (const char* req : bad) {
    CAPTURE(req);
    RawClient c(f.port);
    REQUIRE(c.send(req));
    RawResponse r = c.read_response();
    check_error_body(r, 400);
    CHECK(c.wait_closed());
  }
  RawClient c(f.port);
  REQUIRE(c.send(get_request("/health")));
  CHECK(c.read_response().status == 200);
}

TEST_CASE("server: a pipelined request after a bad one is not answered; earlier ones are") {
  ServerFixture f(add_basic_routes);
  RawClient c(f.port);
  REQUIRE(c.send(get_request("/health") + "NOT HTTP\r\n\r\n" + get_request("/health")));
  CHECK(c.read_response().status == 200);
  check_error_body(c.read_response(), 400);
  CHECK(c.wait_closed());
  CHECK(c.buffer().empty());
}

TEST_CASE("server: slowloris headers are cut off after the header timeout") {
  ServerOptions o;
  o.header_timeout = std::chrono::milliseconds(300);
  ServerFixture f(add_basic_routes, o);
  RawClient c(f.port);
  REQUIRE(c.send("GET /health HTTP/1.1\r\n"));
  // One header byte every 20 ms: the connection must be cut although bytes keep coming.
  bool closed = false;
  auto end = Clock::now() + kDeadline;
  while (!closed && Clock::now() < end) {
    if (!c.send("X")) {
      closed = true;
      break;
    }
    std::string got;
    int r = c.read_some(got, std::chrono::milliseconds(20));
    c.buffer() += got;
    if (r == 0 || r == -1) closed = true;
  }
  CHECK(closed);
  CHECK(c.buffer().find("408") != std::string::npos);
}

TEST_CASE("server: an idle keep-alive connection is closed after the keep-alive timeout") {
  ServerOptions o;
  o.keep_alive_timeout = std::chrono::milliseconds(200);
  ServerFixture f(add_basic_routes, o);
  RawClient c(f.port);
  REQUIRE(c.send(get_request("/health")));
  CHECK(c.read_response().status == 200);
  CHECK(c.wait_closed());
  CHECK(c.buffer().empty());
}

TEST_CASE("server: a slow body is cut off after the body timeout") {
  ServerOptions o;
  o.body_timeout = std::chrono::milliseconds(200);
  ServerFixture f(add_basic_routes, o);
  RawClient c(f.port);
  REQUIRE(c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\npartial"));
  RawResponse r = c.read_response();
  check_error_body(r, 408);
  CHECK(c.wait_closed());
}

TEST_CASE("server: connections beyond max_connections get 503") {
  ServerOptions o;
  o.max_connections = 2;
  ServerFixture f(add_basic_routes, o);
  RawClient a(f.port), b(f.port);
  REQUIRE(a.send(get_request("/health")));
  REQUIRE(b.send(get_request("/health")));
  CHECK(a.read_response().status == 200);
  CHECK(b.read_response().status == 200);
  RawClient c(f.port);
  REQUIRE(c.send(get_request("/health")));
  check_error_body(c.read_response(), 503);
  CHECK(c.wait_closed());
  // A slot frees when a connection goes.
  a.close();
  b.close();
  bool served = false;
  for (int i = 0; i < 100 && !served; ++i) {
    RawClient d(f.port);
    REQUIRE(d.send(get_request("/health")));
    served = d.read_response().status == 200;
  }
  CHECK(served);
}

TEST_CASE("server: a handler that drops its Response unanswered yields a 500") {
  ServerFixture f([](HttpServer& s) {
    s.route("GET", "/drop", [](const Request&, Response) {});
    s.route("GET", "/throw", [](const Request&, Response) -> void { throw std::runtime_error("boom"); });
  });
  RawClient c(f.port);
  REQUIRE(c.send(get_request("/drop")));
  check_error_body(c.read_response(), 500);
  REQUIRE(c.send(get_request("/throw")));
  check_error_body(c.read_response(), 500);
}

TEST_CASE("server: a Response completed from another thread through post()") {
  std::thread worker;
  ServerFixture f([&](HttpServer& s) {
    s.route("POST", "/gen", [&](const Request& req, Response r) {
      EventLoop* loop = &f.lt.loop();
      std::string prompt = req.body;
      worker = std::thread([loop, r, prompt] {  // an "engine" thread
        loop->post([r, prompt]() mutable { r.send(200, "generated:" + prompt); });
      });
    });
  });
  RawClient c(f.port);
  REQUIRE(c.send(post_request("/gen", "hi")));
  RawResponse r = c.read_response();
  CHECK(r.body == "generated:hi");
  worker.join();
}

TEST_CASE("server: IPv6 loopback listener") {
  ServerOptions o;
  o.host = "::1";
  LoopThread lt;
  std::unique_ptr<HttpServer> server;
  bool ok = lt.call([&] {
    server = std::make_unique<HttpServer>(lt.loop(), o);
    add_basic_routes(*server);
    return server->listen().is_ok();
  });
  if (!ok) {
    MESSAGE("no IPv6 loopback here; skipped");
    lt.call([&] { server.reset(); });
    return;
  }
  uint16_t port = lt.call([&] { return server->port(); });
  RawClient c(port, "::1");
  REQUIRE(c.connected());
  REQUIRE(c.send(get_request("/health")));
  CHECK(c.read_response().status == 200);
  lt.call([&] { server.reset(); });
}

TEST_CASE("server: listen errors are Status values") {
  LoopThread lt;
  lt.call([&] {
    ServerOptions o;
    o.host = "not-an-ip";
    HttpServer bad(lt.loop(), o);
    pdctl::Status st = bad.listen();
    CHECK(st.code() == pdctl::Errc::kInvalidArgument);

    HttpServer first(lt.loop());
    REQUIRE(first.listen().is_ok());
    ServerOptions same;
    same.port = first.port();
    HttpServer second(lt.loop(), same);
    st = second.listen();
    CHECK_FALSE(st.is_ok());
    CHECK(st.message().find("listen on") != std::string::npos);
  });
}

TEST_CASE("server: random bytes on many connections leave the server healthy") {
  ServerOptions o;
  o.header_timeout = std::chrono::milliseconds(300);
  o.body_timeout = std::chrono::milliseconds(300);
  o.linger_timeout = std::chrono::milliseconds(100);
  o.max_header_bytes = 4096;
  o.max_payload_size = 4096;
  ServerFixture f(add_basic_routes, o);
  uint64_t seed = 0x9E3779B97F4A7C15ull;
  auto next = [&] {
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return seed;
  };
  const std::string prefixes[] = {"", "GET / HTTP/1.1\r\n", "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                                  "POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\n", "GET /health HTTP/1.1\r\n\r\n"};
  for (int i = 0; i < 150; ++i) {
    RawClient c(f.port);
    REQUIRE(c.connected());
    std::string junk = prefixes[next() % 5];
    size_t n = next() % 3000;
    for (size_t k = 0; k < n; ++k) {
      uint64_t r = next();
      // Mostly printable with line breaks, sometimes any byte.
      junk += (r & 7) == 0 ? static_cast<char>(r >> 8) : (r & 31) == 1 ? '\n' : static_cast<char>(' ' + (r >> 8) % 95);
    }
    c.send(junk);
    if (next() % 2) c.shutdown_write();
  }
  RawClient c(f.port);
  REQUIRE(c.send(get_request("/health")));
  RawResponse r = c.read_response();
  CHECK(r.status == 200);
  CHECK(r.body == "ok");
}

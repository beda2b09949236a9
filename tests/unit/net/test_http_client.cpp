// The HTTP client against the server and against scripted raw upstreams: pooling,
// errors as Status values, timeouts, cancellation, stale connections.
#include <doctest/doctest.h>

#include <atomic>

#include "client_fixture.h"
#include "net/auth.h"

using namespace nettest;
using namespace pdctl::net;
using pdctl::Errc;

namespace {

void routes(HttpServer& s) {
  s.route("GET", "/health", [](const Request&, Response r) { r.send(200, "ok", {{"Content-Type", "text/plain"}}); });
  s.route("POST", "/echo", [](const Request& req, Response r) { r.send(200, req.body); });
  s.route("GET", "/big", [](const Request& req, Response r) {
    r.send(200, std::string(std::stoul(req.query_param("n").value_or("0")), 'b'));
  });
  s.route("GET", "/chunked", [](const Request&, Response r) {
    r.begin_stream(200, {{"Content-Type", "text/plain"}});
    r.write("hello ");
    r.write("chunked ");
    r.write("world");
    r.end();
  });
  s.route("HEAD", "/health", [](const Request&, Response r) { r.send(200, "ok"); });
}

}  // namespace

TEST_CASE("client: GET, POST, chunked and HEAD responses; the connection is reused") {
  ClientFixture f(routes);
  for (int i = 0; i < 5; ++i) {
    auto r = f.get("/health");
    REQUIRE_MESSAGE(r, r.status().to_string());
    CHECK(r->status == 200);
    CHECK(r->body == "ok");
  }
  CHECK(f.lt.call([&] { return f.client->open_connections(f.ep()); }) == 1);
  CHECK(f.lt.call([&] { return f.server->connection_count(); }) == 1);

  ClientRequest post;
  post.method = "POST";
  post.target = "/echo";
  post.body = std::string(300000, 'p');  // more than one write's worth
  auto r = f.fetch(post);
  REQUIRE(r);
  CHECK(r->body == post.body);

  r = f.get("/chunked");
  REQUIRE(r);
  CHECK(r->body == "hello chunked world");
  CHECK(r->headers.get("Transfer-Encoding") == "chunked");

  ClientRequest head;
  head.method = "HEAD";
  head.target = "/health";
  r = f.fetch(head);
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->headers.get("Content-Length") == "2");
  CHECK(r->body.empty());
  // Still one connection: HEAD's bodiless response kept the framing right.
  r = f.get("/health");
  REQUIRE(r);
  CHECK(f.lt.call([&] { return f.client->open_connections(f.ep()); }) == 1);
}

TEST_CASE("client: concurrent requests share at most max_connections_per_upstream connections") {
  ClientOptions co;
  co.max_connections_per_upstream = 4;
  ClientFixture f(routes, co);
  constexpr int kRequests = 200;
  Event all;
  int ok = 0, done = 0;
  size_t max_open = 0;
  f.lt.call([&] {
    for (int i = 0; i < kRequests; ++i) {
      ClientRequest req;
      req.method = "POST";
      req.target = "/echo";
      req.body = std::to_string(i);
      f.client->fetch(f.ep(), req, [&, i](pdctl::Result<HttpResponse> r) {
        if (r && r->body == std::to_string(i)) ok++;
        max_open = std::max(max_open, f.client->open_connections(f.ep()));
        if (++done == kRequests) all.set();
      });
    }
    max_open = std::max(max_open, f.client->open_connections(f.ep()));
  });
  REQUIRE(all.wait());
  f.lt.call([&] {
    CHECK(ok == kRequests);
    CHECK(max_open <= 4);
    CHECK(f.client->idle_connections(f.ep()) == f.client->open_connections(f.ep()));
  });
}

TEST_CASE("client: localhost is resolved") {
  ClientFixture f(routes);
  ClientRequest req;
  req.target = "/health";
  auto r = f.fetch(req, Endpoint{"localhost", f.port});
  REQUIRE_MESSAGE(r, r.status().to_string());
  CHECK(r->body == "ok");
}

TEST_CASE("client: connection refused is a kUnavailable Status") {
  ClientFixture f(routes);
  ClientRequest req;
  auto r = f.fetch(req, Endpoint{"127.0.0.1", closed_port()});
  REQUIRE_FALSE(r);
  CHECK(r.status().code() == Errc::kUnavailable);
  CHECK(r.status().message().find("connect to 127.0.0.1:") != std::string::npos);
}

TEST_CASE("client: every request queued for a refusing upstream fails promptly") {
  ClientOptions co;
  co.max_connections_per_upstream = 2;
  ClientFixture f(routes, co);
  Endpoint dead{"127.0.0.1", closed_port()};
  Event all;
  int failed = 0;
  f.lt.call([&] {
    for (int i = 0; i < 20; ++i) {
      f.client->fetch(dead, ClientRequest{}, [&](pdctl::Result<HttpResponse> r) {
        if (!r && r.status().code() == Errc::kUnavailable) failed++;
        if (failed == 20) all.set();
      });
    }
  });
  CHECK(all.wait());
}

TEST_CASE("client: connect timeout") {
  // A listener that never accepts, with a full backlog: further SYNs go unanswered.
  int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(lfd, 0) == 0);
  socklen_t len = sizeof a;
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len);
  uint16_t port = ntohs(a.sin_port);
  std::vector<int> fillers;  // non-blocking connects: once the backlog is full they hang
  for (int i = 0; i < 4; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    fillers.push_back(fd);
  }

  ClientOptions co;
  co.connect_timeout = std::chrono::milliseconds(200);
  co.response_header_timeout = std::chrono::milliseconds(200);  // if a connect slipped through
  ClientFixture f(routes, co);
  auto r = f.fetch(ClientRequest{}, Endpoint{"127.0.0.1", port});
  REQUIRE_FALSE(r);
  CHECK(r.status().code() == Errc::kTimeout);
  MESSAGE(r.status().message());
  for (int fd : fillers) ::close(fd);
  ::close(lfd);
}

TEST_CASE("client: response-header timeout; the server sees the client go") {
  Event handled, server_saw_close;
  Response held;
  ClientOptions co;
  co.response_header_timeout = std::chrono::milliseconds(200);
  ClientFixture f(
      [&](HttpServer& s) {
        s.route("GET", "/hang", [&](const Request&, Response r) {
          r.on_close([&] { server_saw_close.set(); });
          held = r;  // never answered
          handled.set();
        });
      },
      co);
  ClientRequest req;
  req.target = "/hang";
  auto r = f.fetch(req);
  REQUIRE_FALSE(r);
  CHECK(r.status().code() == Errc::kTimeout);
  CHECK(r.status().message().find("no response head") != std::string::npos);
  CHECK(handled.is_set());
  CHECK(server_saw_close.wait());
  f.lt.call([&] { held = Response(); });
}

TEST_CASE("client: idle-read timeout between body bytes") {
  Response held;
  ClientOptions co;
  co.idle_read_timeout = std::chrono::milliseconds(200);
  ClientFixture f(
      [&](HttpServer& s) {
        s.route("GET", "/stall", [&](const Request&, Response r) {
          r.begin_stream(200);
          r.write("first");
          held = r;
        });
      },
      co);
  std::string got;
  Event done;
  std::optional<pdctl::Status> result;
  f.lt.call([&] {
    ClientRequest req;
    req.target = "/stall";
    ResponseHandlers h;
    h.on_body = [&](std::string_view b) { got += b; };
    h.on_done = [&](const pdctl::Status& st) {
      result = st;
      done.set();
    };
    f.client->request(f.ep(), req, h);
  });
  REQUIRE(done.wait());
  CHECK(got == "first");
  CHECK(result->code() == Errc::kTimeout);
  f.lt.call([&] { held = Response(); });
}

TEST_CASE("client: cancel() closes the upstream connection and silences the callbacks") {
  Event handled, server_saw_close;
  Response held;
  ClientFixture f([&](HttpServer& s) {
    s.route("GET", "/stream", [&](const Request&, Response r) {
      r.on_close([&] { server_saw_close.set(); });
      r.begin_sse();
      r.write_sse("{\"token\":1}");
      held = r;
      handled.set();
    });
  });
  std::atomic<int> callbacks_after_cancel{0};
  Event first_event;
  RequestHandle handle;
  bool cancelled = false;
  f.lt.call([&] {
    ClientRequest req;
    req.target = "/stream";
    ResponseHandlers h;
    h.on_body = [&](std::string_view) {
      if (cancelled) callbacks_after_cancel++;
      first_event.set();
    };
    h.on_done = [&](const pdctl::Status&) { callbacks_after_cancel++; };
    handle = f.client->request(f.ep(), req, h);
  });
  REQUIRE(first_event.wait());
  f.lt.call([&] {
    CHECK(handle.active());
    handle.cancel();
    cancelled = true;
    CHECK_FALSE(handle.active());
    // The server keeps writing: nothing reaches the cancelled request.
    held.write_sse("{\"token\":2}");
  });
  CHECK(server_saw_close.wait());
  f.lt.call([&] {
    CHECK(held.closed());
    CHECK(held.write_sse("x") == WriteResult::kClosed);
    CHECK(callbacks_after_cancel == 0);
    CHECK(f.client->open_connections(f.ep()) == 0);
    held = Response();
  });
}

TEST_CASE("client: cancelling a queued request takes it out of the queue") {
  ClientOptions co;
  co.max_connections_per_upstream = 1;
  std::vector<Response> held;
  Event first_arrived;
  ClientFixture f(
      [&](HttpServer& s) {
        s.route("GET", "/hold", [&](const Request&, Response r) {
          held.push_back(r);
          first_arrived.set();
        });
        s.route("GET", "/health", [](const Request&, Response r) { r.send(200, "ok"); });
      },
      co);
  Event first_done, third_done;
  std::atomic<int> second_callbacks{0};
  RequestHandle second;
  f.lt.call([&] {
    ClientRequest hold;
    hold.target = "/hold";
    f.client->fetch(f.ep(), hold, [&](pdctl::Result<HttpResponse>) { first_done.set(); });
    ClientRequest h;
    h.target = "/health";
    second = f.client->fetch(f.ep(), h, [&](pdctl::Result<HttpResponse>) { second_callbacks++; });
    f.client->fetch(f.ep(), h, [&](pdctl::Result<HttpResponse> r) {
      CHECK(r);
      third_done.set();
    });
  });
  REQUIRE(first_arrived.wait());
  f.lt.call([&] {
    second.cancel();
    held.front().send(200, "released");
  });
  CHECK(first_done.wait());
  CHECK(third_done.wait());
  CHECK(second_callbacks == 0);
  f.lt.call([&] { held.clear(); });
}

TEST_CASE("client: a full wait queue is kResourceExhausted; a stuck queue times out") {
  ClientOptions co;
  co.max_connections_per_upstream = 1;
  co.max_queued_per_upstream = 1;
  co.queue_timeout = std::chrono::milliseconds(200);
  std::vector<Response> held;
  ClientFixture f([&](HttpServer& s) { s.route("GET", "/hold", [&](const Request&, Response r) { held.push_back(r); }); },
                  co);
  Event e2, e3;
  std::optional<pdctl::Status> s2, s3;
  f.lt.call([&] {
    ClientRequest hold;
    hold.target = "/hold";
    f.client->fetch(f.ep(), hold, [](pdctl::Result<HttpResponse>) {});
    f.client->fetch(f.ep(), hold, [&](pdctl::Result<HttpResponse> r) {
      s2 = r.status();
      e2.set();
    });
    f.client->fetch(f.ep(), hold, [&](pdctl::Result<HttpResponse> r) {
      s3 = r.status();
      e3.set();
    });
  });
  REQUIRE(e3.wait());
  CHECK(s3->code() == Errc::kResourceExhausted);
  REQUIRE(e2.wait());
  CHECK(s2->code() == Errc::kTimeout);
  f.lt.call([&] { held.clear(); });
}

TEST_CASE("client: a connection the server closed while idle is not reused") {
  ServerOptions so;
  so.keep_alive_timeout = std::chrono::milliseconds(100);
  ClientFixture f(routes, {}, so);
  REQUIRE(f.get("/health"));
  CHECK(eventually([&] { return f.lt.call([&] { return f.client->open_connections(f.ep()); }) == 0; }));
  auto r = f.get("/health");
  REQUIRE_MESSAGE(r, r.status().to_string());
  CHECK(r->body == "ok");
}

TEST_CASE("client: a request lost on a stale reused connection is retried once (idempotent only)") {
  // The upstream answers one request per connection with keep-alive, then closes the
  // connection when the next request arrives: the race of a keep-alive timeout.
  RawServer up;
  std::atomic<bool> stop{false};
  std::thread upstream([&] {
    while (!stop) {
      int fd = up.accept(std::chrono::milliseconds(100));
      if (fd < 0) continue;
      std::string buf;
      std::string req = RawServer::read_request(fd, buf);
      if (!req.empty()) RawServer::send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
      RawServer::read_request(fd, buf, std::chrono::milliseconds(2000));
      ::close(fd);
    }
  });
  ClientFixture f(routes);
  Endpoint to{"127.0.0.1", up.port()};
  ClientRequest get;
  REQUIRE(f.fetch(get, to));
  auto r = f.fetch(get, to);  // reused connection dies: retried on a new one
  REQUIRE_MESSAGE(r, r.status().to_string());
  CHECK(r->body == "ok");

  ClientRequest post;
  post.method = "POST";
  post.body = "x";
  r = f.fetch(post, to);  // the previous request left an idle connection: this one dies
  REQUIRE_FALSE(r);
  CHECK(r.status().code() == Errc::kUnavailable);

  REQUIRE(f.fetch(get, to));
  post.retry_if_stale = true;
  r = f.fetch(post, to);
  CHECK(r);
  stop = true;
  upstream.join();
}

TEST_CASE("client: malformed responses and oversized bodies are Status values") {
  RawServer up;
  std::thread upstream([&] {
    for (const char* reply : std::initializer_list<const char*>{"HTTP/1.1 200 OK\r\nContent-Length: zz\r\n\r\n", "NOT HTTP AT ALL\r\n\r\n",
                              "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", nullptr}) {
      int fd = up.accept();
      if (fd < 0) return;
      std::string buf;
      RawServer::read_request(fd, buf);
      if (reply) RawServer::send_all(fd, reply);
      if (!reply) RawServer::send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + std::string(5000, 'x'));
      ::close(fd);
    }
  });
  ClientFixture f(routes);
  Endpoint to{"127.0.0.1", up.port()};
  auto r = f.fetch(ClientRequest{}, to);
  CHECK(r.status().code() == Errc::kCorrupt);
  r = f.fetch(ClientRequest{}, to);
  CHECK(r.status().code() == Errc::kCorrupt);
  r = f.fetch(ClientRequest{}, to);  // closed 90 bytes short
  CHECK(r.status().code() == Errc::kUnavailable);
  ClientRequest small;
  small.max_body_bytes = 1000;
  r = f.fetch(small, to);
  CHECK(r.status().code() == Errc::kResourceExhausted);
  upstream.join();
}

TEST_CASE("client: a response read until the connection closes") {
  RawServer up;
  std::thread upstream([&] {
    int fd = up.accept();
    std::string buf;
    RawServer::read_request(fd, buf);
    RawServer::send_all(fd, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it");
    ::close(fd);
  });
  ClientFixture f(routes);
  auto r = f.fetch(ClientRequest{}, Endpoint{"127.0.0.1", up.port()});
  REQUIRE_MESSAGE(r, r.status().to_string());
  CHECK(r->body == "all of it");
  upstream.join();
}

TEST_CASE("auth: Bearer token on chosen routes") {
  ClientFixture f([](HttpServer& s) {
    s.route("GET", "/health", [](const Request&, Response r) { r.send(200, "ok"); });
    s.route("GET", "/v1/models", require_bearer("sk-test", [](const Request&, Response r) { r.send(200, "{}"); }));
  });
  auto r = f.get("/health");
  CHECK(r->status == 200);
  r = f.get("/v1/models");
  CHECK(r->status == 401);
  CHECK(r->headers.get("WWW-Authenticate") == "Bearer");
  CHECK(r->body.find("\"code\":401") != std::string::npos);
  ClientRequest req;
  req.target = "/v1/models";
  req.headers.add("Authorization", "Bearer sk-wrong");
  CHECK(f.fetch(req)->status == 401);
  req.headers.set("Authorization", "bearer sk-test");
  CHECK(f.fetch(req)->status == 200);
}

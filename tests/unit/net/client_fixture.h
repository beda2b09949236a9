#pragma once
// An HttpServer and an HttpClient on one LoopThread, with blocking helpers for tests.
#include <functional>
#include <memory>
#include <optional>

#include "net/http_client.h"
#include "net/http_server.h"
#include "net_test_util.h"

namespace nettest {

struct ClientFixture {
  LoopThread lt;
  std::unique_ptr<pdctl::net::HttpServer> server;
  std::unique_ptr<pdctl::net::HttpClient> client;
  uint16_t port = 0;

  explicit ClientFixture(const std::function<void(pdctl::net::HttpServer&)>& routes,
                         pdctl::net::ClientOptions co = {}, pdctl::net::ServerOptions so = {}) {
    lt.call([&] {
      server = std::make_unique<pdctl::net::HttpServer>(lt.loop(), so);
      routes(*server);
      pdctl::Status st = server->listen();
      REQUIRE_MESSAGE(st.is_ok(), st.to_string());
      port = server->port();
      client = std::make_unique<pdctl::net::HttpClient>(lt.loop(), co);
    });
  }
  ~ClientFixture() {
    lt.call([&] {
      client.reset();
      server.reset();
    });
  }
  ClientFixture(const ClientFixture&) = delete;
  ClientFixture& operator=(const ClientFixture&) = delete;

  pdctl::net::Endpoint ep() const { return {"127.0.0.1", port}; }

  // fetch() and wait for its result.
  pdctl::Result<pdctl::net::HttpResponse> fetch(pdctl::net::ClientRequest req,
                                                std::optional<pdctl::net::Endpoint> to = std::nullopt) {
    Event done;
    std::optional<pdctl::Result<pdctl::net::HttpResponse>> out;
    pdctl::net::Endpoint where = to.value_or(ep());
    lt.call([&] {
      client->fetch(where, std::move(req), [&](pdctl::Result<pdctl::net::HttpResponse> r) {
        out.emplace(std::move(r));
        done.set();
      });
    });
    REQUIRE(done.wait());
    return std::move(*out);
  }
  pdctl::Result<pdctl::net::HttpResponse> get(std::string target) {
    pdctl::net::ClientRequest req;
    req.target = std::move(target);
    return fetch(std::move(req));
  }
};

}  // namespace nettest

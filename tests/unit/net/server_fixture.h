#pragma once
// An HttpServer on a LoopThread, listening on a free loopback port.
#include <functional>
#include <memory>

#include "net/http_server.h"
#include "net_test_util.h"

namespace nettest {

struct ServerFixture {
  LoopThread lt;
  std::unique_ptr<pdctl::net::HttpServer> server;
  uint16_t port = 0;

  explicit ServerFixture(const std::function<void(pdctl::net::HttpServer&)>& setup,
                         pdctl::net::ServerOptions opts = {}) {
    lt.call([&] {
      server = std::make_unique<pdctl::net::HttpServer>(lt.loop(), opts);
      setup(*server);
      pdctl::Status st = server->listen();
      REQUIRE_MESSAGE(st.is_ok(), st.to_string());
      port = server->port();
    });
  }
  ~ServerFixture() {
    lt.call([&] { server.reset(); });
  }
  ServerFixture(const ServerFixture&) = delete;
  ServerFixture& operator=(const ServerFixture&) = delete;
};

}  // namespace nettest

#pragma once
// `pdctl router` on one event loop: the HTTP server with every route, the HTTP clients
// toward the workers, the core (router_core.h), the health monitor, and the admission
// queue's timer. router_main.cpp runs it; tests can run it on a loop of their own.
#include <functional>
#include <memory>
#include <optional>

#include "net/event_loop.h"
#include "net/http_client.h"
#include "net/http_server.h"
#include "roles/router/health_monitor.h"
#include "roles/router/pd_request.h"
#include "roles/router/router_context.h"
#include "roles/router/router_core.h"
#include "roles/router/router_options.h"

namespace pdctl::router {

class RouterServer {
 public:
  // Builds the core from the flags and adds the configured workers. `seed`: see
  // RouterCore::create. Errors: invalid_argument (a policy, a worker URL).
  static Result<std::unique_ptr<RouterServer>> create(net::EventLoop& loop, roles::RouterOptions opts,
                                                      std::optional<uint64_t> seed = std::nullopt);
  ~RouterServer();
  RouterServer(const RouterServer&) = delete;
  RouterServer& operator=(const RouterServer&) = delete;

  // Listens and starts the health monitor. `on_startup_failed` runs when no usable worker
  // passed a health check within --worker-startup-timeout-secs.
  Status start(std::function<void(Status)> on_startup_failed);
  uint16_t port() const { return server_.port(); }

  // Graceful shutdown: stops accepting and the timers, lets the requests in flight finish
  // (at most `grace`; then they are cut off), then `done` on the loop thread.
  void shutdown(std::chrono::milliseconds grace, std::function<void()> done);

  RouterCore& core() { return *core_; }

 private:
  RouterServer(net::EventLoop& loop, roles::RouterOptions opts, std::unique_ptr<RouterCore> core);
  void add_api_routes();
  void handle_api(ApiRoute route, const net::Request& req, net::Response resp);
  void arm_admission_expiry();

  // Destruction runs bottom-up: the server and the monitor go first, then the clients
  // (dropping their callbacks may end the last requests, which still use the context and
  // the core), then the context and the core. The context refers to the clients before
  // they are built; it only stores the references.
  net::EventLoop& loop_;
  roles::RouterOptions opts_;
  std::unique_ptr<RouterCore> core_;
  DeadlineList deadlines_;
  RouterContext ctx_;
  net::HttpClient client_;
  net::HttpClient control_;
  HealthMonitor health_;
  net::Timer admission_timer_;
  net::HttpServer server_;
  bool need_json_ = false;
  bool need_text_ = false;
};

}  // namespace pdctl::router

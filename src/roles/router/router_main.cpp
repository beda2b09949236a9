// `pdctl router`: the gateway's process. One event loop; SIGINT / SIGTERM stop accepting,
// let the requests in flight finish (up to --request-timeout-secs) and exit 0; a second
// signal exits at once.
#include <csignal>

#include <spdlog/spdlog.h>

#include "net/event_loop.h"
#include "roles/roles.h"
#include "roles/router/router_server.h"

namespace pdctl::roles {

int run_router(const RouterOptions& opts) {
  net::EventLoop loop;
  auto server = router::RouterServer::create(loop, opts);
  if (!server) {
    spdlog::error("router: {}", server.status().message());
    return 1;
  }
  int exit_code = 0;
  Status st = (*server)->start([&](Status why) {
    spdlog::critical("router: {}", why.message());
    exit_code = 1;
    loop.stop();
  });
  if (!st.is_ok()) {
    spdlog::error("router: {}", st.message());
    return 1;
  }

  bool stopping = false;
  net::SignalWatcher signals(loop, {SIGINT, SIGTERM}, [&](int signum) {
    if (stopping) {
      spdlog::warn("router: second signal ({}): exiting now", signum);
      loop.stop();
      return;
    }
    stopping = true;
    spdlog::info("router: signal {}: finishing the requests in flight, then exiting", signum);
    (*server)->shutdown(std::chrono::seconds(opts.request_timeout_secs), [&loop] { loop.stop(); });
  });

  loop.run();
  server->reset();
  if (Status closed = loop.close(); !closed.is_ok()) {
    spdlog::error("router: {}", closed.message());
    if (exit_code == 0) exit_code = 1;
  }
  return exit_code;
}

}  // namespace pdctl::roles

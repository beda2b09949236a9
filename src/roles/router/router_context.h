#pragma once
// What the pieces of the router's HTTP layer share (router_server.cpp owns all of it). Loop
// thread only, like everything in src/roles/router/.
#include <chrono>
#include <functional>

#include "net/event_loop.h"
#include "net/http_client.h"
#include "roles/router/deadline_list.h"
#include "roles/router/router_core.h"
#include "roles/router/router_options.h"
#include "roles/router/upstream.h"

namespace pdctl::router {

struct RouterContext {
  net::EventLoop& loop;
  const roles::RouterOptions& opts;
  RouterCore& core;
  // Client requests to workers. A pool of its own keeps health checks and admin fan-out
  // from queueing behind generation traffic (a saturated pool would time checks out and
  // mark busy workers unhealthy).
  net::HttpClient& client;
  net::HttpClient& control;
  UpstreamCache upstreams;
  // --request-timeout-secs of every request in flight.
  DeadlineList& deadlines;
  // Called after a request joined the admission queue: (re)arms the queue's expiry timer.
  std::function<void()> on_enqueued;

  TimePoint now() const { return Clock::now(); }
  std::chrono::milliseconds request_timeout() const {
    return std::chrono::seconds(opts.request_timeout_secs);
  }
};

}  // namespace pdctl::router

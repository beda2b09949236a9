#pragma once
// How the router's HTTP layer talks to workers: a worker URL as an endpoint plus path
// prefix, the headers that cross the proxy, transport errors as the core's AttemptResult,
// and the JSON error bodies it answers with.
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/status.h"
#include "net/http_client.h"
#include "net/http_types.h"
#include "net/url.h"
#include "roles/router/router_common.h"

namespace pdctl::router {

// A worker URL split for the client: "http://h:p/prefix" -> {h:p, "/prefix"} (no trailing
// slash), so that a route's target is prefix + path.
struct Upstream {
  net::Endpoint endpoint;
  std::string prefix;
};

// Errors: unsupported (https), invalid_argument (not a URL).
Result<Upstream> parse_upstream(std::string_view worker_url);

// Worker URL -> Upstream, parsed once per worker rather than once per request.
class UpstreamCache {
 public:
  Result<const Upstream*> get(const std::string& worker_url);
  void forget(const std::string& worker_url) { cache_.erase(worker_url); }

 private:
  std::unordered_map<std::string, Upstream> cache_;
};

// How a failed client call ended, for the breaker, health and retry decisions: a refused
// connection (nothing listens: the worker is down), a timeout, or a reset / early close.
TransportError classify_transport(const Status& st);
AttemptResult attempt_result(const Status& st, int http_status);

// The client's headers minus hop-by-hop ones (Connection, Keep-Alive, TE, Upgrade,
// Proxy-*, Transfer-Encoding), Host, Content-Length and Expect: what a worker gets.
net::Headers forward_request_headers(const net::Headers& in);
// A worker's response headers minus hop-by-hop ones and framing (the router frames its
// own response): what the router's client gets.
net::Headers forward_response_headers(const net::Headers& in);

bool is_event_stream(const net::Headers& h);

// One data event carrying the stack's JSON error ({"error":{"message","type","code"}}), for
// a stream that fails after it began.
std::string sse_error_event(int status, std::string_view message);

// The HTTP status the router answers when an attempt failed without a response: 504 for a
// timeout, 502 otherwise.
int gateway_status(TransportError e);

}  // namespace pdctl::router

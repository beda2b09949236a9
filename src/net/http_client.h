#pragma once
// HTTP/1.1 client on libuv + llhttp: a keep-alive connection pool per upstream (host:port),
// streamed responses (head, de-chunked body pieces, completion Status), timeouts,
// cancellation. For the router's proxying and health checks and for `pdctl bench`.
//
// Threading: loop thread only. Callbacks run on the loop thread, never from inside
// request()/fetch() themselves. Do not destroy the client inside one of its callbacks.
//
// Proxying a stream (the router; `down` is the Response to its own client):
//   RequestHandle h = client.request(worker, std::move(req), {
//       .on_head = [down](const ResponseHead&) mutable { down.begin_sse(); },
//       .on_body = [down](std::string_view bytes) mutable { down.write(bytes); },
//       .on_done = [down](const Status& st) mutable {
//         if (!down.started()) return down.send_error(502, st.message());
//         if (!st) down.write_sse(error_json(502, st.message()));
//         down.end(); }});
//   down.on_close([h]() mutable { h.cancel(); });  // the router's client went away
//   Backpressure: down.write() == kPaused -> h.pause_body(); down.on_writable -> h.resume_body().
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "net/event_loop.h"
#include "net/http_types.h"
#include "net/url.h"

namespace pdctl::net {

namespace detail {
struct Call;
class ClientCore;
}  // namespace detail

using std::chrono::milliseconds;

struct ClientOptions {
  size_t max_connections_per_upstream = 128;
  size_t max_queued_per_upstream = 4096;  // requests waiting for a busy pool (not counting those
                                          // a connect in progress will take); beyond: kResourceExhausted

  // Timeouts (0 disables one). Each failure is a Status with code kTimeout.
  milliseconds connect_timeout{5'000};
  milliseconds queue_timeout{30'000};             // waiting for a free connection
  milliseconds response_header_timeout{60'000};   // request sent -> response head received
  milliseconds idle_read_timeout{300'000};        // between two pieces of the body
  milliseconds pool_idle_timeout{30'000};         // a pooled idle connection is closed after it
                                                  // (keep it below the servers' keep-alive)
  milliseconds dns_cache_ttl{30'000};

  size_t max_response_header_bytes = 64 * 1024;   // beyond: kCorrupt
  uint64_t max_buffered_body = 512ull << 20;      // fetch(): beyond it kResourceExhausted
};

struct ClientRequest {
  std::string method = "GET";
  std::string target = "/";  // path and query
  Headers headers;           // Host and Content-Length are added unless given
  std::string body;

  // Per request; 0 keeps the client's default.
  milliseconds response_header_timeout{0};
  milliseconds idle_read_timeout{0};
  uint64_t max_body_bytes = 0;  // a longer response body fails with kResourceExhausted

  // Stale connections: a request sent on a reused keep-alive connection that dies before
  // any response byte arrives (the server closed it meanwhile) is sent once more, on
  // another connection - for idempotent methods (GET, HEAD, PUT, DELETE, OPTIONS) always,
  // for others (POST...) only when this is set.
  bool retry_if_stale = false;
};

struct ResponseHead {
  int status = 0;
  Headers headers;
};

// All optional but on_done. on_done runs exactly once unless the request is cancelled:
// ok after the whole body; else kUnavailable (refused, reset, closed early, DNS),
// kTimeout, kCorrupt (malformed response), kResourceExhausted (queue full, body too big).
struct ResponseHandlers {
  std::function<void(const ResponseHead&)> on_head;
  std::function<void(std::string_view)> on_body;  // de-chunked body bytes as they arrive
  std::function<void(const Status&)> on_done;
};

struct HttpResponse {
  int status = 0;
  Headers headers;
  std::string body;
};

// The caller's hold on one request. Copyable; an empty handle does nothing.
class RequestHandle {
 public:
  RequestHandle() = default;

  // No callback runs after it (they are released, so they may capture the handle). A
  // queued request leaves the queue; one in progress closes its upstream connection (so
  // the upstream sees the client go away).
  void cancel();
  // Backpressure toward the upstream: stop / resume reading the response body. While
  // paused, the idle-read timeout does not run.
  void pause_body();
  void resume_body();
  // Neither finished nor cancelled.
  bool active() const;

 private:
  friend class detail::ClientCore;
  explicit RequestHandle(std::shared_ptr<detail::Call> call) : call_(std::move(call)) {}
  std::shared_ptr<detail::Call> call_;
};

class HttpClient {
 public:
  HttpClient(EventLoop& loop, ClientOptions options = {});
  // Closes every connection; callbacks of unfinished requests are dropped, not called.
  // (The same happens when the loop stops.)
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends `req` to `to` (a name - resolved with getaddrinfo, IPv4 preferred - or an IP
  // literal) on a pooled connection.
  RequestHandle request(const Endpoint& to, ClientRequest req, ResponseHandlers handlers);

  // The same, buffering the whole response (up to max_buffered_body, or the request's
  // max_body_bytes). `done` runs exactly once unless cancelled.
  RequestHandle fetch(const Endpoint& to, ClientRequest req, std::function<void(Result<HttpResponse>)> done);

  // Pool state of one upstream (for tests and metrics).
  size_t open_connections(const Endpoint& to) const;  // connected or connecting
  size_t idle_connections(const Endpoint& to) const;

 private:
  std::unique_ptr<detail::ClientCore> core_;
};

}  // namespace pdctl::net

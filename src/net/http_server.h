#pragma once
// HTTP/1.1 server on libuv + llhttp: keep-alive, pipelining (responses strictly in request
// order), routing with path parameters, asynchronous handlers, streamed (chunked / SSE)
// responses with backpressure, limits and timeouts, graceful shutdown.
//
// Threading: everything here runs on the EventLoop's thread. Another thread hands results
// back with loop.post([resp] { resp.write(...); }) (copying a Response is thread-safe; using
// one is not).
//
// A role's skeleton:
//   EventLoop loop;
//   HttpServer server(loop, {.host = opts.host, .port = opts.port, ...});
//   server.route("GET", "/health", [](const Request&, Response r) { r.send(200, "{}"); });
//   server.route("POST", "/v1/chat/completions", require_bearer(key, [&](const Request& req, Response r) {
//     r.on_close([id] { /* abort upstream */ });
//     engine.submit(req.body, [&loop, r](Token t) { loop.post([r, t]() mutable { r.write_sse(t.json); }); });
//   }));
//   if (Status st = server.listen(); !st) return fail(st);
//   SignalWatcher sig(loop, {SIGINT, SIGTERM}, [&](int) { server.shutdown(10s, [&] { loop.stop(); }); });
//   loop.run();  // returns after loop.stop(); exit 0
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

namespace pdctl::net {

namespace detail {
struct Exchange;
class ServerCore;
}  // namespace detail

using std::chrono::milliseconds;

struct ServerOptions {
  std::string host = "127.0.0.1";  // IPv4 or IPv6 literal ("0.0.0.0", "::", "::1")
  int port = 0;                    // 0: the kernel picks a free port (see HttpServer::port())
  int backlog = 511;

  // Limits. Each refusal is a JSON error body (error_json) and the connection is closed.
  size_t max_header_bytes = 64 * 1024;            // request line + headers -> 431
  uint64_t max_payload_size = 512ull << 20;       // body bytes -> 413 (Content-Length at once)
  size_t max_connections = 4096;                  // beyond it: 503 and close
  size_t max_pipelined = 16;                      // parsed requests awaiting their response;
                                                  // reading pauses beyond it

  // Timeouts (0 disables one).
  milliseconds keep_alive_timeout{60'000};  // idle connection between requests: closed
  milliseconds header_timeout{10'000};      // first byte to end of headers -> 408 and close,
                                            // however the bytes trickle in (slowloris)
  milliseconds body_timeout{300'000};       // end of headers to end of body -> 408 and close
  milliseconds write_stall_timeout{60'000}; // queued response bytes that make no progress
                                            // (a client that stopped reading): abort
  milliseconds linger_timeout{2'000};       // after an error reply, how long unread request
                                            // bytes are drained so the client sees the reply

  // Backpressure of streamed responses (Response::write).
  size_t write_high_water = 1u << 20;    // queued bytes from which write() says kPaused
  size_t max_write_queue = 16u << 20;    // queued bytes beyond which the connection is aborted
};

enum class WriteResult {
  kOk,      // queued below the high-water mark: keep writing
  kPaused,  // queued at or above it: stop until on_writable() fires
  kClosed,  // the client is gone, the response was already finished, or the queue limit
            // was passed (the connection was aborted): nothing was written
};

// The handle through which a handler answers one request, now or later. Copyable (all
// copies refer to the same response). Exactly one of send / send_error / begin_stream ...
// end; calls after that are ignored (kClosed). If the last copy is dropped unanswered,
// the client gets a 500 error (a stream that was begun is cut off instead).
class Response {
 public:
  Response() = default;
  Response(const Response& other);
  Response(Response&& other) noexcept;
  Response& operator=(Response other) noexcept;
  ~Response();

  const Request& request() const;

  // Whole response. Content-Length is added; Content-Type defaults to application/json
  // when `headers` has none. A body of a 204/304 status is not sent.
  void send(int status, std::string body, const Headers& headers = {});
  // An error in the stack's one shape: {"error":{"message","type","code"}}.
  void send_error(int status, std::string_view message, std::string_view type = {});

  // Streaming: the status line and headers, then write() chunks, then end(). Chunked
  // transfer encoding for HTTP/1.1 (an HTTP/1.0 client gets the raw body and a close).
  void begin_stream(int status, const Headers& headers = {});
  // Server-Sent Events: begin_stream(200) with text/event-stream and no caching.
  void begin_sse(const Headers& extra = {});
  WriteResult write(std::string_view bytes);
  WriteResult write_sse(std::string_view data);  // "data: DATA\n\n"
  void end();
  void end_sse();  // "data: [DONE]\n\n", then end()

  // Backpressure. queued_bytes(): this response's bytes not yet taken by the kernel.
  // After a write() returned kPaused, `cb` runs once the queue drops below the high-water
  // mark; it stays installed for later pauses. A producer that ignores kPaused and keeps
  // writing has its connection aborted when the queue passes max_write_queue (then
  // on_close fires and writes return kClosed) - memory stays bounded either way.
  size_t queued_bytes() const;
  void on_writable(std::function<void()> cb);

  // `cb` runs once if the connection goes away before the response is finished (client
  // disconnect, reset, timeout, server shutdown deadline): abort the work upstream.
  // Both callbacks are dropped once the response is finished or the connection is gone,
  // so they may capture the Response itself.
  void on_close(std::function<void()> cb);

  bool closed() const;    // the connection is gone: further writes are dropped
  bool finished() const;  // send()/end() was called
  bool started() const;   // the status line has been produced
  explicit operator bool() const { return ex_ != nullptr; }

 private:
  friend class detail::ServerCore;
  explicit Response(std::shared_ptr<detail::Exchange> ex);
  std::shared_ptr<detail::Exchange> ex_;
};

// A route's handler: runs on the loop thread once the request (body included) has arrived.
using Handler = std::function<void(const Request&, Response)>;

class HttpServer {
 public:
  HttpServer(EventLoop& loop, ServerOptions options = {});
  // Closes the listener and every connection at once without calling on_close callbacks
  // (their owners may be gone too). Call shutdown() first for a graceful exit. Do not
  // destroy the server from inside one of its callbacks; post() the destruction.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Registers `handler` for `method` on `pattern` ("/health", "/workers/{url}",
  // "/files/{rest...}"). Unknown path: 404; known path, other method: 405 with Allow.
  // Throws std::invalid_argument on a malformed pattern (routes are set up at start-up).
  void route(std::string_view method, std::string_view pattern, Handler handler);

  // Binds host:port and starts accepting.
  Status listen();
  // The bound port (after listen()).
  uint16_t port() const;

  // Graceful shutdown: stops accepting, closes idle connections, lets in-flight responses
  // finish (each then closes its connection), aborts what is left after `grace` (their
  // on_close callbacks fire), then calls `on_done` once, on the loop thread.
  void shutdown(milliseconds grace, std::function<void()> on_done);

  size_t connection_count() const;

 private:
  std::unique_ptr<detail::ServerCore> core_;
};

}  // namespace pdctl::net

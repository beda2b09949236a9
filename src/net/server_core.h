#pragma once
// Internal to src/net: the state behind HttpServer. One ServerConn per accepted socket (a
// request parser, a queue of exchanges in request order, an output queue, one timer), one
// Exchange per request (what the handler's Response refers to).
//
// Lifetimes: a ServerConn is freed by the close callback of its last handle; it outlives
// its ServerCore when the server is destroyed first (then `core` is nullptr). An Exchange
// is shared by the connection's queue and the handler's Response copies; once its
// connection is gone `conn` is nullptr and output is dropped.
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <llhttp.h>
#include <uv.h>

#include "net/event_loop.h"
#include "net/http_server.h"
#include "net/out_queue.h"
#include "net/route_table.h"

namespace pdctl::net::detail {

class ServerCore;
struct ServerConn;

struct Exchange {
  EventLoop* loop = nullptr;
  ServerConn* conn = nullptr;  // nullptr once the connection is gone
  Request req;
  std::atomic<int> user_refs{0};  // live Response copies

  bool dispatched = false;     // handed to a handler
  bool started = false;        // status line produced
  bool finished = false;       // last byte produced
  bool chunked = false;        // streamed with chunked encoding
  bool no_body = false;        // HEAD: framing headers only
  bool keep_alive = true;      // the request allows another on this connection
  bool close_after = false;    // the connection closes once this response is out
  bool linger = false;         // ... after draining unread request bytes (error replies)
  bool paused = false;         // a write said kPaused: on_writable is due
  bool continue_due = false;   // "100 Continue" to send when this reaches the head

  std::string held;            // output produced while an earlier response is unfinished
  std::function<void()> on_writable;
  std::function<void()> on_close;
};

// Response's building blocks (http_server.cpp); the core uses them for its own replies.
void exchange_send(Exchange& ex, int status, std::string body, const Headers& headers);
void exchange_send_error(Exchange& ex, int status, std::string_view message, std::string_view type = {});
void exchange_begin(Exchange& ex, int status, const Headers& headers);
WriteResult exchange_write(Exchange& ex, std::string_view bytes);
void exchange_end(Exchange& ex);
size_t exchange_queued(const Exchange& ex);
// The last Response copy is gone: answer 500, or cut off a begun stream.
void exchange_abandon(const std::shared_ptr<Exchange>& ex);

struct ServerConn {
  explicit ServerConn(ServerCore* owner);

  uv_tcp_t tcp{};
  uv_timer_t timer{};
  uv_shutdown_t shutdown_req{};
  ServerCore* core;
  OutQueue out;
  llhttp_t parser{};

  std::deque<std::shared_ptr<Exchange>> queue;  // requests in arrival order; front = head
  Exchange* parsing = nullptr;                  // request being parsed (the queue's tail)
  Exchange* completed = nullptr;                // set by on_message_complete, for feed()
  std::string field, value;                     // header being parsed
  size_t header_bytes = 0;
  int refuse_status = 0;                        // set by a parser callback that refuses
  std::string refuse_message;
  std::string pending_input;                    // bytes kept while reading is paused

  uint64_t read_deadline = 0;   // idle / headers / body / linger (loop ms; 0 = none)
  uint64_t stall_deadline = 0;  // queued output without progress
  uint64_t armed_at = 0;        // when the timer fires (0 = stopped)
  bool deferred = false;        // deferred work due at the next timer callback

  bool input_paused = false;       // too many pipelined requests: not reading
  bool input_done = false;         // no more requests are parsed (error, close): discard input
  bool in_body = false;            // the request being parsed is past its headers
  bool counted = false;            // counts against max_connections
  bool draining = false;           // server shutdown: finish what was dispatched, then close
  bool close_when_flushed = false;
  bool linger_on_close = false;
  bool lingering = false;          // write side shut, discarding input until EOF or timeout
  bool closing = false;            // uv_close called
  int open_handles = 0;
  std::vector<std::shared_ptr<Exchange>> notify_on_close;

  ServerConn* prev = nullptr;
  ServerConn* next = nullptr;
};

class ServerCore final : public LoopResource {
 public:
  ServerCore(EventLoop& loop, ServerOptions options);
  ~ServerCore() override;

  void route(std::string_view method, std::string_view pattern, Handler handler);
  Status listen();
  uint16_t port() const { return port_; }
  void shutdown(milliseconds grace, std::function<void()> on_done);
  size_t connection_count() const { return active_; }

  const ServerOptions& options() const { return opts_; }
  EventLoop& event_loop() const { return *loop_ptr_; }

  // Connection events (server_conn.cpp).
  void on_accept();
  void dispatch(const std::shared_ptr<Exchange>& ex);  // route a complete request
  void conn_closing(ServerConn* c);
  void unlink(ServerConn* c);
  void check_shutdown_done();

 private:
  void on_loop_stop() override;
  void close_listener();

  EventLoop* loop_ptr_;
  ServerOptions opts_;
  RouteTable routes_;
  std::deque<Handler> handlers_;  // stable: a handler may add routes while it runs
  uv_tcp_t* listener_ = nullptr;  // freed by its close callback
  uint16_t port_ = 0;
  ServerConn* conns_ = nullptr;   // every connection not yet freed
  size_t active_ = 0;             // connections not closing
  bool shutting_down_ = false;
  std::function<void()> on_shutdown_done_;
  Timer grace_timer_;
  Timer done_timer_;
};

// Connection operations (server_conn.cpp), used by the exchange functions.
namespace conn {
bool is_head(const ServerConn* c, const Exchange* ex);
void after_output(ServerConn* c);             // bytes were queued: stall timer, close checks
void exchange_finished(ServerConn* c);        // the head (or a later one) finished
void abort(ServerConn* c, std::string_view why);  // close now; unfinished exchanges notified
void write_failed(ServerConn* c, int status);
// Server-side entry points.
void start(ServerConn* c);                     // accepted: read, arm the first deadline
void refuse(ServerConn* c, int status, const std::string& message, bool linger);
void drain(ServerConn* c);                     // shutdown began
void close_now(ServerConn* c);
}  // namespace conn

}  // namespace pdctl::net::detail

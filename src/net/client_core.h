#pragma once
// Internal to src/net: the state behind HttpClient. A Pool per upstream holds its
// connections (idle ones LIFO) and the requests waiting for one; a ClientConn runs one
// request at a time; a Call is one request, shared with the caller's RequestHandle.
//
// Lifetimes: a ClientConn is freed by the close callback of its last handle and outlives
// its Pool when the client is destroyed first (then `pool` is nullptr). A Call's `pool`
// and `conn` are valid only while it is queued or active.
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <llhttp.h>
#include <uv.h>

#include "net/event_loop.h"
#include "net/http_client.h"
#include "net/out_queue.h"

namespace pdctl::net::detail {

class ClientCore;
struct ClientConn;
struct Pool;

struct Call {
  ClientRequest req;
  ResponseHandlers handlers;
  enum class State { kNew, kQueued, kActive, kDone } state = State::kNew;
  Pool* pool = nullptr;
  ClientConn* conn = nullptr;
  uint64_t queued_at = 0;
  bool retried = false;
  bool got_bytes = false;    // a byte of the response arrived
  bool body_paused = false;
  bool in_callback = false;  // on_head / on_body is running
  uint64_t body_bytes = 0;
  ResponseHead head;
};

struct ClientConn {
  explicit ClientConn(Pool* owner);

  uv_tcp_t tcp{};
  uv_timer_t timer{};
  uv_connect_t connect_req{};
  Pool* pool;
  OutQueue out;
  llhttp_t parser{};
  std::shared_ptr<Call> call;

  enum class State { kConnecting, kIdle, kBusy, kClosing } state = State::kConnecting;
  enum class Wait { kNone, kConnect, kHead, kBody, kIdle } wait = Wait::kNone;
  uint64_t deadline = 0;   // for `wait` (kBody: since last_read)
  uint64_t last_read = 0;
  bool reused = false;     // served a request before the current one
  bool interim = false;    // parsing a 1xx response
  bool complete = false;   // the current response ended (set by the parser)
  bool keep_alive = false;
  int pending_error = 0;    // a libuv error to report from the timer (see fail_soon)
  Status parse_error;      // why a parser callback stopped the parser
  std::string field, value;
  size_t header_bytes = 0;
  int open_handles = 0;

  ClientConn* prev = nullptr;  // in the pool's list of every connection
  ClientConn* next = nullptr;
};

struct Pool {
  Pool(ClientCore* owner, Endpoint to);
  ~Pool();

  ClientCore* core;
  Endpoint endpoint;
  std::string where;                     // "host:port" for messages
  sockaddr_storage addr{};
  bool have_addr = false;
  bool numeric = false;                  // an IP literal: never resolved
  uint64_t addr_expires = 0;
  struct Resolve* resolving = nullptr;   // a getaddrinfo in flight

  ClientConn* conns = nullptr;           // every connection not yet freed
  std::vector<ClientConn*> idle;         // most recently used last
  size_t open = 0;                       // connecting or connected, not closing
  size_t connecting = 0;
  std::deque<std::shared_ptr<Call>> waiting;
  Timer queue_timer;
};

class ClientCore final : public LoopResource {
 public:
  ClientCore(EventLoop& loop, ClientOptions options);
  ~ClientCore() override;

  std::shared_ptr<Call> submit(const Endpoint& to, ClientRequest req, ResponseHandlers handlers);
  const ClientOptions& options() const { return opts_; }
  uv_loop_t* uv() const { return loop_ptr_->uv(); }
  EventLoop& event_loop() const { return *loop_ptr_; }
  const Pool* find_pool(const Endpoint& to) const;
  static RequestHandle make_handle(std::shared_ptr<Call> call) { return RequestHandle(std::move(call)); }

  // Pool operations (http_client.cpp).
  void dispatch(Pool* p);                       // hand idle connections to waiters, open more
  void fail_later(std::shared_ptr<Call> call, Status st);
  void requeue_front(Pool* p, std::shared_ptr<Call> call);

 private:
  void on_loop_stop() override;
  void close_all();

  EventLoop* loop_ptr_;
  ClientOptions opts_;
  std::unordered_map<std::string, std::unique_ptr<Pool>> pools_;
};

// Connection operations (client_conn.cpp).
namespace cconn {
void open(Pool* p);                                      // connect to p->addr
void assign(ClientConn* c, std::shared_ptr<Call> call);  // send the request
void close(ClientConn* c);                               // no callback of its call runs
void pause(ClientConn* c);
void resume(ClientConn* c);
}  // namespace cconn

// Finishes a call: no callback runs after this one.
void finish_call(const std::shared_ptr<Call>& call, const Status& st);

}  // namespace pdctl::net::detail

// HttpServer: listening, accepting, routing, shutdown; Response and the output of one
// exchange (heads, framing, pipelining hold-back, backpressure).
#include "net/http_server.h"

#include <charconv>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "net/server_core.h"
#include "net/sse.h"
#include "net/url.h"
#include "net/uv_error.h"

namespace pdctl::net {

namespace detail {

namespace {

// ---------------------------------------------------------------- exchange output

// Response heads are built here and copied only when the kernel does not take them at once.
thread_local std::string g_head;
thread_local std::string g_scratch;

void append_number(std::string& out, uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

bool closes_connection(const Exchange& ex) {
  if (ex.close_after || !ex.keep_alive) return true;
  // A draining connection closes after its last response: only that one says so.
  const ServerConn* c = ex.conn;
  return c != nullptr && c->draining && !c->queue.empty() && c->queue.back().get() == &ex;
}

enum class Framing { kNone, kLength, kChunked, kUntilClose };

const std::string& build_head(Exchange& ex, int status, const Headers& headers, Framing framing, size_t length,
                              bool default_json) {
  std::string& h = g_head;
  h.clear();
  h += "HTTP/1.1 ";
  append_number(h, static_cast<uint64_t>(status));
  h += ' ';
  h += status_reason(status);
  h += "\r\n";
  for (const auto& [name, value] : headers) {
    // Framing is the stack's; a CR or LF would let a value forge headers of its own.
    if (iequals(name, "Content-Length") || iequals(name, "Transfer-Encoding") || iequals(name, "Connection")) continue;
    if (name.find_first_of("\r\n:") != std::string::npos || value.find_first_of("\r\n") != std::string::npos) {
      spdlog::warn("http: dropping response header {} with a line break", name);
      continue;
    }
    h += name;
    h += ": ";
    h += value;
    h += "\r\n";
  }
  if (default_json && !headers.has("Content-Type")) h += "Content-Type: application/json\r\n";
  switch (framing) {
    case Framing::kLength:
      h += "Content-Length: ";
      append_number(h, length);
      h += "\r\n";
      break;
    case Framing::kChunked:
      h += "Transfer-Encoding: chunked\r\n";
      break;
    case Framing::kNone:
    case Framing::kUntilClose:
      break;
  }
  if (framing == Framing::kUntilClose || closes_connection(ex)) {
    ex.close_after = true;
    h += "Connection: close\r\n";
  } else if (ex.req.http_minor == 0) {
    h += "Connection: keep-alive\r\n";
  }
  h += "\r\n";
  return h;
}

void emit(Exchange& ex, std::string_view a, std::string_view b = {}, std::string_view c = {}) {
  ServerConn* conn = ex.conn;
  if (conn == nullptr) return;
  if (conn::is_head(conn, &ex)) {
    int r = conn->out.write(a, b, c);
    if (r < 0) {
      conn::write_failed(conn, r);
    } else {
      conn::after_output(conn);
    }
    return;
  }
  ex.held.append(a);  // pipelined behind an unfinished response: held back, in order
  ex.held.append(b);
  ex.held.append(c);
}

void emit_owned(Exchange& ex, std::string_view head, std::string&& body) {
  ServerConn* conn = ex.conn;
  if (conn == nullptr) return;
  if (conn::is_head(conn, &ex)) {
    int r = conn->out.write_owned(head, std::move(body));
    if (r < 0) {
      conn::write_failed(conn, r);
    } else {
      conn::after_output(conn);
    }
    return;
  }
  ex.held.append(head);
  ex.held.append(body);
}

// A finished response calls nothing back: dropping the callbacks now also breaks the cycle
// of a callback that captures its own Response. (A running on_writable is a copy.)
void release_callbacks(Exchange& ex) {
  ex.on_close = nullptr;
  ex.on_writable = nullptr;
}

bool usable(const Exchange& ex, const char* what) {
  if (ex.started || ex.finished) {
    spdlog::warn("http: {} on a response already {}", what, ex.finished ? "finished" : "begun");
    return false;
  }
  return true;
}

}  // namespace

void exchange_send(Exchange& ex, int status, std::string body, const Headers& headers) {
  if (!usable(ex, "send")) return;
  ex.started = ex.finished = true;
  bool bodyless = status == 204 || status == 304 || (status >= 100 && status < 200);
  if (bodyless) body.clear();
  const std::string& head =
      build_head(ex, status, headers, bodyless ? Framing::kNone : Framing::kLength, body.size(), !bodyless);
  if (ex.no_body) body.clear();  // HEAD: the length of the body it would have had
  emit_owned(ex, head, std::move(body));
  release_callbacks(ex);
  if (ex.conn != nullptr) conn::exchange_finished(ex.conn);
}

void exchange_send_error(Exchange& ex, int status, std::string_view message, std::string_view type) {
  exchange_send(ex, status, error_json(status, message, type), {});
}

void exchange_begin(Exchange& ex, int status, const Headers& headers) {
  if (!usable(ex, "begin_stream")) return;
  ex.started = true;
  ex.chunked = ex.req.http_minor >= 1;
  const std::string& head = build_head(ex, status, headers, ex.chunked ? Framing::kChunked : Framing::kUntilClose, 0, false);
  emit(ex, head);
}

size_t exchange_queued(const Exchange& ex) {
  const ServerConn* c = ex.conn;
  if (c == nullptr) return 0;
  return conn::is_head(c, &ex) ? c->out.queued() : ex.held.size();
}

WriteResult exchange_write(Exchange& ex, std::string_view bytes) {
  if (ex.finished || ex.conn == nullptr) return WriteResult::kClosed;
  if (!ex.started) {
    spdlog::warn("http: write before begin_stream");
    return WriteResult::kClosed;
  }
  const ServerOptions& o = ex.conn->core->options();
  size_t queued = exchange_queued(ex);
  if (!bytes.empty() && !ex.no_body) {
    if (queued >= o.write_high_water && queued + bytes.size() > o.max_write_queue) {
      spdlog::warn("http: a streamed response passed {} queued bytes (the client is not reading and the "
                   "producer ignored backpressure): aborting the connection",
                   o.max_write_queue);
      conn::abort(ex.conn, "write queue limit");
      return WriteResult::kClosed;
    }
    if (ex.chunked) {
      char size_line[20];
      auto [end, ec] = std::to_chars(size_line, size_line + 16, bytes.size(), 16);
      *end++ = '\r';
      *end++ = '\n';
      emit(ex, std::string_view(size_line, static_cast<size_t>(end - size_line)), bytes, "\r\n");
    } else {
      emit(ex, bytes);
    }
    if (ex.conn == nullptr) return WriteResult::kClosed;
    queued = exchange_queued(ex);
  }
  if (queued >= o.write_high_water) {
    ex.paused = true;
    return WriteResult::kPaused;
  }
  return WriteResult::kOk;
}

void exchange_end(Exchange& ex) {
  if (!ex.started || ex.finished) return;
  ex.finished = true;
  if (ex.chunked && !ex.no_body) emit(ex, "0\r\n\r\n");
  release_callbacks(ex);
  if (ex.conn != nullptr) conn::exchange_finished(ex.conn);
}

void exchange_abandon(const std::shared_ptr<Exchange>& ex) {
  if (ex->finished || ex->conn == nullptr) return;
  if (!ex->started) {
    spdlog::warn("http: the handler of {} {} dropped its response unanswered", ex->req.method, ex->req.path());
    exchange_send_error(*ex, 500, "the request was dropped without a response");
  } else {
    conn::abort(ex->conn, "a streamed response was dropped unfinished");
  }
}

// ---------------------------------------------------------------- ServerCore

ServerCore::ServerCore(EventLoop& loop, ServerOptions options)
    : LoopResource(loop), loop_ptr_(&loop), opts_(std::move(options)), grace_timer_(loop), done_timer_(loop) {
  if (opts_.max_pipelined == 0) opts_.max_pipelined = 1;
}

ServerCore::~ServerCore() {
  detach_from_loop();
  close_listener();
  for (ServerConn* c = conns_; c != nullptr;) {
    ServerConn* next = c->next;
    c->core = nullptr;  // its close callback frees it alone
    c->prev = c->next = nullptr;
    for (auto& ex : c->queue) {
      ex->on_close = nullptr;
      ex->on_writable = nullptr;
    }
    conn::close_now(c);
    c->notify_on_close.clear();
    c = next;
  }
  conns_ = nullptr;
}

void ServerCore::on_loop_stop() {
  close_listener();
  for (ServerConn* c = conns_; c != nullptr; c = c->next) conn::close_now(c);
}

void ServerCore::route(std::string_view method, std::string_view pattern, Handler handler) {
  if (!handler) throw std::invalid_argument("route without a handler: " + std::string(pattern));
  routes_.add(method, pattern, handlers_.size());
  handlers_.push_back(std::move(handler));
}

Status ServerCore::listen() {
  if (loop() == nullptr) return Status::unavailable("the event loop has stopped");
  if (listener_ != nullptr) return Status::already_exists("the server is already listening");
  if (opts_.port < 0 || opts_.port > 65535) return Status::out_of_range("port " + std::to_string(opts_.port));
  std::string host = opts_.host == "localhost" ? "127.0.0.1" : opts_.host;
  std::string where = Endpoint{host, static_cast<uint16_t>(opts_.port)}.to_string();
  sockaddr_storage addr{};
  int rc = host.find(':') != std::string::npos
               ? uv_ip6_addr(host.c_str(), opts_.port, reinterpret_cast<sockaddr_in6*>(&addr))
               : uv_ip4_addr(host.c_str(), opts_.port, reinterpret_cast<sockaddr_in*>(&addr));
  if (rc != 0) return Status::invalid_argument("listen address is not an IP literal: " + opts_.host);

  listener_ = new uv_tcp_t;
  uv_tcp_init(loop_ptr_->uv(), listener_);
  listener_->data = this;
  rc = uv_tcp_bind(listener_, reinterpret_cast<const sockaddr*>(&addr), 0);
  if (rc == 0) {
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(listener_), opts_.backlog, [](uv_stream_t* s, int status) {
      auto* core = static_cast<ServerCore*>(s->data);
      if (status < 0) {
        spdlog::warn("http: accept: {}", uv_strerror(status));
        return;
      }
      core->on_accept();
    });
  }
  if (rc != 0) {
    close_listener();
    return uv_error(rc, "listen on " + where);
  }
  sockaddr_storage bound{};
  int len = sizeof bound;
  uv_tcp_getsockname(listener_, reinterpret_cast<sockaddr*>(&bound), &len);
  port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  spdlog::info("http: listening on {}", Endpoint{host, port_}.to_string());
  return Status::ok();
}

void ServerCore::close_listener() {
  if (listener_ == nullptr) return;
  uv_close(reinterpret_cast<uv_handle_t*>(listener_), [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
  listener_ = nullptr;
}

void ServerCore::on_accept() {
  auto* c = new ServerConn(this);
  uv_tcp_init(loop_ptr_->uv(), &c->tcp);
  c->tcp.data = c;
  uv_timer_init(loop_ptr_->uv(), &c->timer);
  c->timer.data = c;
  c->open_handles = 2;
  c->next = conns_;
  if (conns_ != nullptr) conns_->prev = c;
  conns_ = c;
  if (uv_accept(reinterpret_cast<uv_stream_t*>(listener_), reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) {
    conn::close_now(c);
    return;
  }
  conn::start(c);
  if (active_ >= opts_.max_connections) {
    conn::refuse(c, 503, "too many open connections (" + std::to_string(opts_.max_connections) + ")", true);
    return;
  }
  c->counted = true;
  active_++;
}

void ServerCore::dispatch(const std::shared_ptr<Exchange>& ex) {
  RouteTable::Match m = routes_.match(ex->req.method, ex->req.path());
  ex->dispatched = true;
  switch (m.outcome) {
    case RouteTable::Outcome::kFound:
      break;
    case RouteTable::Outcome::kNotFound:
      exchange_send_error(*ex, 404, "no route for " + std::string(ex->req.method) + " " + std::string(ex->req.path()));
      return;
    case RouteTable::Outcome::kMethodNotAllowed:
      exchange_send(*ex, 405,
                    error_json(405, std::string(ex->req.method) + " is not allowed on " + std::string(ex->req.path()) +
                                        " (allowed: " + m.allow + ")"),
                    Headers{{"Allow", m.allow}});
      return;
    case RouteTable::Outcome::kBadParam:
      exchange_send_error(*ex, 400, "badly percent-encoded path parameter in " + std::string(ex->req.path()));
      return;
  }
  ex->req.params = std::move(m.params);
  const Handler& handler = handlers_[m.id];
  // Held across the call so that a throwing handler is answered by the catch below, not
  // by the unwinding of the last Response copy.
  Response held(ex);
  try {
    handler(ex->req, held);
  } catch (const std::exception& e) {
    // A throwing handler is a bug; the client gets a 500 and the process stays up.
    spdlog::error("http: the handler of {} {} threw: {}", ex->req.method, ex->req.path(), e.what());
    if (!ex->started) {
      exchange_send_error(*ex, 500, "internal error");
    } else if (!ex->finished && ex->conn != nullptr) {
      conn::abort(ex->conn, "handler threw");
    }
  }
}

void ServerCore::conn_closing(ServerConn* c) {
  if (c->counted) {
    c->counted = false;
    active_--;
  }
}

void ServerCore::unlink(ServerConn* c) {
  if (c->prev != nullptr) {
    c->prev->next = c->next;
  } else if (conns_ == c) {
    conns_ = c->next;
  }
  if (c->next != nullptr) c->next->prev = c->prev;
  c->prev = c->next = nullptr;
}

void ServerCore::shutdown(milliseconds grace, std::function<void()> on_done) {
  if (shutting_down_) {
    spdlog::warn("http: shutdown already in progress");
    return;
  }
  shutting_down_ = true;
  on_shutdown_done_ = std::move(on_done);
  close_listener();
  for (ServerConn* c = conns_; c != nullptr;) {
    ServerConn* next = c->next;  // drain may close c (it stays linked until freed)
    conn::drain(c);
    c = next;
  }
  if (grace.count() > 0) {
    grace_timer_.start(grace, [this] {
      for (ServerConn* c = conns_; c != nullptr; c = c->next) {
        conn::abort(c, "shutdown deadline passed");
      }
    });
  }
  // Called back from the loop, never from inside shutdown().
  done_timer_.start(milliseconds(0), [this] { check_shutdown_done(); });
}

void ServerCore::check_shutdown_done() {
  if (!shutting_down_ || conns_ != nullptr || !on_shutdown_done_) return;
  grace_timer_.cancel();
  done_timer_.cancel();
  auto fn = std::move(on_shutdown_done_);
  on_shutdown_done_ = nullptr;
  spdlog::info("http: server shut down");
  fn();
}

}  // namespace detail

// ---------------------------------------------------------------- Response

using detail::Exchange;

Response::Response(std::shared_ptr<Exchange> ex) : ex_(std::move(ex)) { ex_->user_refs.fetch_add(1); }

Response::Response(const Response& other) : ex_(other.ex_) {
  if (ex_) ex_->user_refs.fetch_add(1, std::memory_order_relaxed);
}

Response::Response(Response&& other) noexcept : ex_(std::move(other.ex_)) {}

Response& Response::operator=(Response other) noexcept {
  std::swap(ex_, other.ex_);
  return *this;
}

Response::~Response() {
  if (!ex_ || ex_->user_refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  EventLoop* loop = ex_->loop;
  if (loop->in_loop_thread()) {
    detail::exchange_abandon(ex_);
  } else {
    // Dropped on another thread: the check (and any 500) happens on the loop thread.
    loop->post([ex = std::move(ex_)] { detail::exchange_abandon(ex); });
  }
}

const Request& Response::request() const {
  static const Request kEmpty;
  return ex_ ? ex_->req : kEmpty;
}

void Response::send(int status, std::string body, const Headers& headers) {
  if (ex_) detail::exchange_send(*ex_, status, std::move(body), headers);
}

void Response::send_error(int status, std::string_view message, std::string_view type) {
  if (ex_) detail::exchange_send_error(*ex_, status, message, type);
}

void Response::begin_stream(int status, const Headers& headers) {
  if (ex_) detail::exchange_begin(*ex_, status, headers);
}

void Response::begin_sse(const Headers& extra) {
  Headers h = extra;
  if (!h.has("Content-Type")) h.add("Content-Type", "text/event-stream");
  if (!h.has("Cache-Control")) h.add("Cache-Control", "no-cache");
  begin_stream(200, h);
}

WriteResult Response::write(std::string_view bytes) {
  return ex_ ? detail::exchange_write(*ex_, bytes) : WriteResult::kClosed;
}

WriteResult Response::write_sse(std::string_view data) {
  std::string& s = detail::g_scratch;
  s.clear();
  append_sse_event(s, data);
  return write(s);
}

void Response::end() {
  if (ex_) detail::exchange_end(*ex_);
}

void Response::end_sse() {
  write(kSseDone);
  end();
}

size_t Response::queued_bytes() const { return ex_ ? detail::exchange_queued(*ex_) : 0; }

void Response::on_writable(std::function<void()> cb) {
  if (ex_) ex_->on_writable = std::move(cb);
}

void Response::on_close(std::function<void()> cb) {
  if (ex_) ex_->on_close = std::move(cb);
}

bool Response::closed() const { return !ex_ || ex_->conn == nullptr; }
bool Response::finished() const { return ex_ && ex_->finished; }
bool Response::started() const { return ex_ && ex_->started; }

// ---------------------------------------------------------------- HttpServer

HttpServer::HttpServer(EventLoop& loop, ServerOptions options)
    : core_(std::make_unique<detail::ServerCore>(loop, std::move(options))) {}

HttpServer::~HttpServer() = default;

void HttpServer::route(std::string_view method, std::string_view pattern, Handler handler) {
  core_->route(method, pattern, std::move(handler));
}

Status HttpServer::listen() { return core_->listen(); }
uint16_t HttpServer::port() const { return core_->port(); }

void HttpServer::shutdown(milliseconds grace, std::function<void()> on_done) {
  core_->shutdown(grace, std::move(on_done));
}

size_t HttpServer::connection_count() const { return core_->connection_count(); }

}  // namespace pdctl::net

// The client side of one HTTP/1.1 connection: connect, send one request at a time, parse
// the response (llhttp), timeouts, failure and stale-connection retry.
#include <string>
#include <utility>

#include <spdlog/spdlog.h>

#include "net/client_core.h"
#include "net/uv_error.h"

namespace pdctl::net::detail {

namespace {

constexpr size_t kReadBufferBytes = 64 * 1024;
thread_local char g_read_buffer[kReadBufferBytes];  // see server_conn.cpp
thread_local std::string g_head;

uint64_t to_ms(milliseconds d) { return d.count() > 0 ? static_cast<uint64_t>(d.count()) : 0; }
ClientConn* conn_of(llhttp_t* p) { return static_cast<ClientConn*>(p->data); }
uint64_t now_of(const ClientConn* c) { return uv_now(c->tcp.loop); }
uv_stream_t* stream_of(ClientConn* c) { return reinterpret_cast<uv_stream_t*>(&c->tcp); }
// Valid while the connection belongs to a pool (always, except after the client is gone).
const ClientOptions& opts(const ClientConn* c) { return c->pool->core->options(); }

milliseconds or_default(milliseconds v, milliseconds def) { return v.count() > 0 ? v : def; }

bool idempotent(std::string_view m) {
  return m == "GET" || m == "HEAD" || m == "PUT" || m == "DELETE" || m == "OPTIONS" || m == "TRACE";
}

void on_timer(uv_timer_t* t);
void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);
void on_alloc(uv_handle_t*, size_t, uv_buf_t* buf) { *buf = uv_buf_init(g_read_buffer, kReadBufferBytes); }

void set_wait(ClientConn* c, ClientConn::Wait w, milliseconds timeout) {
  c->wait = w;
  uint64_t t = to_ms(timeout);
  if (w == ClientConn::Wait::kNone || t == 0) {
    c->deadline = 0;
    uv_timer_stop(&c->timer);
    return;
  }
  c->deadline = now_of(c) + t;
  uv_timer_start(&c->timer, on_timer, t, 0);
}

// Errors found while inside request()/dispatch must not call back from there: they are
// raised from the connection's timer instead.
void fail_soon(ClientConn* c, int uv_code) {
  c->wait = ClientConn::Wait::kNone;
  c->pending_error = uv_code;
  uv_timer_start(&c->timer, on_timer, 0, 0);
}

// The request failed on this connection. A request that went out on a reused connection
// and got no byte back is sent once more when it is safe to (see ClientRequest).
void fail(ClientConn* c, Status st, bool stale_candidate) {
  std::shared_ptr<Call> call = std::move(c->call);
  c->call = nullptr;
  Pool* p = c->pool;
  bool reused = c->reused;
  cconn::close(c);
  if (!call) return;
  call->conn = nullptr;
  if (stale_candidate && reused && p != nullptr && !call->got_bytes && !call->retried &&
      (idempotent(call->req.method) || call->req.retry_if_stale)) {
    spdlog::debug("http client: {} on a reused connection to {}; sending once more", st.message(), p->where);
    call->retried = true;
    p->core->requeue_front(p, std::move(call));
    return;
  }
  finish_call(call, st);
  if (p != nullptr) p->core->dispatch(p);
}

// A connect failed. When nothing else of the pool is connected the upstream is down, and
// every waiting request hears it now rather than one connect attempt at a time.
void connect_failed(ClientConn* c, const Status& st) {
  Pool* p = c->pool;
  cconn::close(c);
  if (p == nullptr) return;
  std::deque<std::shared_ptr<Call>> failed;
  if (p->open == p->connecting) {
    failed.swap(p->waiting);
  } else if (!p->waiting.empty()) {
    failed.push_back(std::move(p->waiting.front()));
    p->waiting.pop_front();
  }
  ClientCore* core = p->core;
  for (auto& call : failed) {
    call->pool = nullptr;
    finish_call(call, st);
  }
  core->dispatch(p);
}

// The current response ended (the parser said so); `trailing`: bytes followed it.
void complete(ClientConn* c, bool trailing) {
  std::shared_ptr<Call> call = std::move(c->call);
  c->call = nullptr;
  call->conn = nullptr;
  Pool* p = c->pool;
  bool reusable = p != nullptr && c->keep_alive && !trailing && c->out.idle();
  if (reusable) {
    c->reused = true;
    c->state = ClientConn::State::kIdle;
    if (call->body_paused) uv_read_start(stream_of(c), on_alloc, on_read);  // to see the server close it
    p->idle.push_back(c);
    set_wait(c, ClientConn::Wait::kIdle, opts(c).pool_idle_timeout);
    p->core->dispatch(p);  // waiters first, then the callback (which may send more)
  } else {
    cconn::close(c);
    if (p != nullptr) p->core->dispatch(p);
  }
  finish_call(call, Status::ok());
}

void feed(ClientConn* c, const char* data, size_t len) {
  c->call->got_bytes = true;
  c->last_read = now_of(c);
  llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
  if (c->state == ClientConn::State::kClosing) return;  // cancelled from a callback
  if (err == HPE_OK) return;
  if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
    size_t used = static_cast<size_t>(llhttp_get_error_pos(&c->parser) - data);
    complete(c, used < len || err == HPE_PAUSED_UPGRADE);
    return;
  }
  Status st = !c->parse_error.is_ok()
                  ? c->parse_error
                  : Status::corrupt("malformed response from " + c->pool->where + ": " + llhttp_get_error_reason(&c->parser));
  fail(c, std::move(st), false);
}

void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  auto* c = static_cast<ClientConn*>(s->data);
  if (c->state == ClientConn::State::kClosing || n == 0) return;
  if (c->state != ClientConn::State::kBusy || !c->call) {
    // EOF, an error or stray bytes on an idle connection: it is never used again.
    Pool* p = c->pool;
    cconn::close(c);
    if (p != nullptr) p->core->dispatch(p);
    return;
  }
  if (n > 0) {
    feed(c, buf->base, static_cast<size_t>(n));
    return;
  }
  if (n == UV_EOF) {
    // A body delimited by the end of the connection ends here.
    llhttp_errno_t err = llhttp_finish(&c->parser);
    if (err == HPE_PAUSED && c->complete) {
      c->keep_alive = false;
      complete(c, false);
      return;
    }
    fail(c, Status::unavailable("connection to " + c->pool->where + " closed before the response ended"), true);
    return;
  }
  fail(c, uv_error(static_cast<int>(n), "read from " + c->pool->where), true);
}

void on_timer(uv_timer_t* t) {
  auto* c = static_cast<ClientConn*>(t->data);
  if (c->state == ClientConn::State::kClosing) return;
  if (c->pending_error != 0) {
    int code = std::exchange(c->pending_error, 0);
    if (c->state == ClientConn::State::kConnecting) {
      connect_failed(c, uv_error(code, "connect to " + c->pool->where));
    } else {
      fail(c, uv_error(code, "send to " + c->pool->where), true);
    }
    return;
  }
  const ClientOptions& o = opts(c);
  switch (c->wait) {
    case ClientConn::Wait::kNone:
      return;
    case ClientConn::Wait::kConnect:
      connect_failed(c, Status::timeout("connect to " + c->pool->where + ": no answer within " +
                                        std::to_string(to_ms(o.connect_timeout)) + " ms"));
      return;
    case ClientConn::Wait::kHead: {
      uint64_t ms = to_ms(or_default(c->call->req.response_header_timeout, o.response_header_timeout));
      fail(c, Status::timeout("no response head from " + c->pool->where + " within " + std::to_string(ms) + " ms"), false);
      return;
    }
    case ClientConn::Wait::kBody: {
      // The deadline moves with every read; it is only checked here, when the timer fires.
      uint64_t ms = to_ms(or_default(c->call->req.idle_read_timeout, o.idle_read_timeout));
      uint64_t idle = now_of(c) - c->last_read;
      if (c->call->body_paused || idle < ms) {
        uv_timer_start(&c->timer, on_timer, c->call->body_paused ? ms : ms - idle, 0);
        return;
      }
      fail(c, Status::timeout("no response bytes from " + c->pool->where + " for " + std::to_string(ms) + " ms"), false);
      return;
    }
    case ClientConn::Wait::kIdle: {
      Pool* p = c->pool;
      cconn::close(c);
      p->core->dispatch(p);
      return;
    }
  }
}

void on_closed(uv_handle_t* h) {
  auto* c = static_cast<ClientConn*>(h->data);
  if (--c->open_handles > 0) return;
  if (Pool* p = c->pool) {
    if (c->prev != nullptr) {
      c->prev->next = c->next;
    } else if (p->conns == c) {
      p->conns = c->next;
    }
    if (c->next != nullptr) c->next->prev = c->prev;
  }
  delete c;
}

// ---------------------------------------------------------------- parser callbacks

int count_header_bytes(ClientConn* c, size_t n) {
  c->header_bytes += n;
  if (c->header_bytes > opts(c).max_response_header_bytes) {
    c->parse_error = Status::corrupt("response headers from " + c->pool->where + " larger than " +
                                     std::to_string(opts(c).max_response_header_bytes) + " bytes");
    return HPE_USER;
  }
  return 0;
}

int on_message_begin(llhttp_t* p) {
  ClientConn* c = conn_of(p);
  c->header_bytes = 0;
  c->field.clear();
  c->value.clear();
  c->call->head = ResponseHead{};
  return 0;
}

int on_header_field(llhttp_t* p, const char* at, size_t len) {
  ClientConn* c = conn_of(p);
  c->field.append(at, len);
  return count_header_bytes(c, len);
}

int on_header_value(llhttp_t* p, const char* at, size_t len) {
  ClientConn* c = conn_of(p);
  c->value.append(at, len);
  return count_header_bytes(c, len);
}

int on_header_value_complete(llhttp_t* p) {
  ClientConn* c = conn_of(p);
  c->call->head.headers.add(std::move(c->field), std::move(c->value));
  c->field.clear();
  c->value.clear();
  return count_header_bytes(c, 4);
}

int on_headers_complete(llhttp_t* p) {
  ClientConn* c = conn_of(p);
  int status = p->status_code;
  if (status >= 100 && status < 200 && status != 101) {
    c->interim = true;  // 100 Continue and friends: the real response follows
    return 0;
  }
  std::shared_ptr<Call> call = c->call;  // alive across the callback
  call->head.status = status;
  c->last_read = now_of(c);
  set_wait(c, ClientConn::Wait::kBody, or_default(call->req.idle_read_timeout, opts(c).idle_read_timeout));
  if (call->handlers.on_head) {
    call->in_callback = true;
    call->handlers.on_head(call->head);
    call->in_callback = false;
  }
  if (call->state == Call::State::kDone || c->state == ClientConn::State::kClosing) {
    call->handlers = ResponseHandlers{};  // cancelled from the callback: released now
    return HPE_USER;
  }
  return call->req.method == "HEAD" ? 1 : 0;
}

int on_body(llhttp_t* p, const char* at, size_t len) {
  ClientConn* c = conn_of(p);
  std::shared_ptr<Call> call = c->call;
  call->body_bytes += len;
  if (call->req.max_body_bytes != 0 && call->body_bytes > call->req.max_body_bytes) {
    c->parse_error = Status::resource_exhausted("response body from " + c->pool->where + " larger than " +
                                                std::to_string(call->req.max_body_bytes) + " bytes");
    return HPE_USER;
  }
  if (call->handlers.on_body) {
    call->in_callback = true;
    call->handlers.on_body(std::string_view(at, len));
    call->in_callback = false;
  }
  if (call->state == Call::State::kDone || c->state == ClientConn::State::kClosing) {
    call->handlers = ResponseHandlers{};
    return HPE_USER;
  }
  return 0;
}

int on_message_complete(llhttp_t* p) {
  ClientConn* c = conn_of(p);
  if (c->interim) {
    c->interim = false;
    return 0;
  }
  c->keep_alive = llhttp_should_keep_alive(p) != 0;
  c->complete = true;
  return HPE_PAUSED;  // finish outside llhttp_execute
}

const llhttp_settings_t* parser_settings() {
  static const llhttp_settings_t settings = [] {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_message_begin = on_message_begin;
    s.on_header_field = on_header_field;
    s.on_header_value = on_header_value;
    s.on_header_value_complete = on_header_value_complete;
    s.on_headers_complete = on_headers_complete;
    s.on_body = on_body;
    s.on_message_complete = on_message_complete;
    return s;
  }();
  return &settings;
}

void append_number(std::string& out, size_t v) { out += std::to_string(v); }

}  // namespace

ClientConn::ClientConn(Pool* owner)
    : pool(owner), out(reinterpret_cast<uv_stream_t*>(&tcp), this, [](void* self, int status) {
        auto* c = static_cast<ClientConn*>(self);
        if (c->state == ClientConn::State::kClosing || status >= 0) return;
        if (c->state == ClientConn::State::kBusy && c->call) {
          fail(c, uv_error(status, "send to " + c->pool->where), true);
        } else {
          cconn::close(c);
        }
      }) {}

namespace cconn {

void open(Pool* p) {
  ClientCore* core = p->core;
  auto* c = new ClientConn(p);
  uv_tcp_init(core->uv(), &c->tcp);
  c->tcp.data = c;
  uv_timer_init(core->uv(), &c->timer);
  c->timer.data = c;
  c->connect_req.data = c;
  c->open_handles = 2;
  c->next = p->conns;
  if (p->conns != nullptr) p->conns->prev = c;
  p->conns = c;
  p->open++;
  p->connecting++;
  c->state = ClientConn::State::kConnecting;
  int rc = uv_tcp_connect(&c->connect_req, &c->tcp, reinterpret_cast<const sockaddr*>(&p->addr),
                          [](uv_connect_t* req, int status) {
                            auto* cc = static_cast<ClientConn*>(req->data);
                            if (cc->state != ClientConn::State::kConnecting) return;  // closed meanwhile
                            if (status < 0) {
                              connect_failed(cc, uv_error(status, "connect to " + cc->pool->where));
                              return;
                            }
                            Pool* pool = cc->pool;
                            pool->connecting--;
                            cc->state = ClientConn::State::kIdle;
                            uv_tcp_nodelay(&cc->tcp, 1);
                            uv_read_start(stream_of(cc), on_alloc, on_read);
                            pool->idle.push_back(cc);
                            set_wait(cc, ClientConn::Wait::kIdle, opts(cc).pool_idle_timeout);
                            pool->core->dispatch(pool);
                          });
  if (rc < 0) {
    fail_soon(c, rc);
    return;
  }
  set_wait(c, ClientConn::Wait::kConnect, core->options().connect_timeout);
}

void assign(ClientConn* c, std::shared_ptr<Call> call) {
  c->state = ClientConn::State::kBusy;
  c->complete = c->interim = c->keep_alive = false;
  c->parse_error = Status::ok();
  call->state = Call::State::kActive;
  call->conn = c;
  call->pool = c->pool;
  call->got_bytes = false;
  call->body_bytes = 0;
  call->body_paused = false;
  c->call = std::move(call);
  const ClientRequest& req = c->call->req;
  llhttp_init(&c->parser, HTTP_RESPONSE, parser_settings());
  c->parser.data = c;

  std::string& h = g_head;
  h.clear();
  h += req.method;
  h += ' ';
  h += req.target.empty() ? std::string_view("/") : std::string_view(req.target);
  h += " HTTP/1.1\r\n";
  if (!req.headers.has("Host")) {
    h += "Host: ";
    h += c->pool->where;
    h += "\r\n";
  }
  for (const auto& [name, value] : req.headers) {
    if (iequals(name, "Content-Length") || iequals(name, "Transfer-Encoding")) continue;
    if (name.find_first_of("\r\n:") != std::string::npos || value.find_first_of("\r\n") != std::string::npos) continue;
    h += name;
    h += ": ";
    h += value;
    h += "\r\n";
  }
  if (!req.body.empty() || req.method == "POST" || req.method == "PUT" || req.method == "PATCH") {
    h += "Content-Length: ";
    append_number(h, req.body.size());
    h += "\r\n";
  }
  h += "\r\n";
  // The body is only copied if the kernel does not take it at once: it must stay with the
  // call in case a stale connection makes us send it again.
  int r = c->out.write(h, req.body);
  if (r < 0) {
    fail_soon(c, r);
    return;
  }
  set_wait(c, ClientConn::Wait::kHead, or_default(req.response_header_timeout, opts(c).response_header_timeout));
}

void close(ClientConn* c) {
  if (c->state == ClientConn::State::kClosing) return;
  if (Pool* p = c->pool) {
    if (c->state == ClientConn::State::kConnecting) p->connecting--;
    if (c->state == ClientConn::State::kIdle) std::erase(p->idle, c);
    p->open--;
  }
  c->state = ClientConn::State::kClosing;
  if (c->call) {
    c->call->conn = nullptr;
    c->call = nullptr;
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), on_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&c->timer), on_closed);
}

void pause(ClientConn* c) {
  if (c->state != ClientConn::State::kBusy || !c->call || c->call->body_paused) return;
  c->call->body_paused = true;
  uv_read_stop(stream_of(c));
}

void resume(ClientConn* c) {
  if (c->state != ClientConn::State::kBusy || !c->call || !c->call->body_paused) return;
  c->call->body_paused = false;
  c->last_read = now_of(c);
  uv_read_start(stream_of(c), on_alloc, on_read);
}

}  // namespace cconn

void finish_call(const std::shared_ptr<Call>& call, const Status& st) {
  if (call->state == Call::State::kDone) return;
  call->state = Call::State::kDone;
  call->pool = nullptr;
  call->conn = nullptr;
  auto done = std::move(call->handlers.on_done);
  call->handlers = ResponseHandlers{};  // no callback can be running: release captures
  if (done) done(st);
}

}  // namespace pdctl::net::detail

// The server side of one HTTP/1.1 connection: parsing (llhttp), pipelining order,
// timeouts, limits, closing (with lingering after error replies).
#include <string>
#include <utility>

#include <spdlog/spdlog.h>

#include "net/server_core.h"

namespace pdctl::net::detail {

namespace {

// libuv reads into this and calls back at once, so one buffer serves every connection of
// the thread (the parser callbacks copy out what they keep).
constexpr size_t kReadBufferBytes = 64 * 1024;
thread_local char g_read_buffer[kReadBufferBytes];

uint64_t to_ms(milliseconds d) { return d.count() > 0 ? static_cast<uint64_t>(d.count()) : 0; }
ServerConn* conn_of(llhttp_t* p) { return static_cast<ServerConn*>(p->data); }
uint64_t now_of(const ServerConn* c) { return uv_now(c->tcp.loop); }
const ServerOptions& opts(const ServerConn* c) { return c->core->options(); }
uv_stream_t* stream_of(ServerConn* c) { return reinterpret_cast<uv_stream_t*>(&c->tcp); }

void on_timer(uv_timer_t* t);
void feed(ServerConn* c, const char* data, size_t len);

// Starts the timer for the earliest deadline. A timer already armed for an earlier time is
// left alone: it re-arms when it fires, so moving a deadline later costs nothing.
void arm(ServerConn* c) {
  if (c->closing) return;
  uint64_t now = now_of(c);
  uint64_t next = c->deferred ? now : 0;
  for (uint64_t d : {c->read_deadline, c->stall_deadline}) {
    if (d != 0 && (next == 0 || d < next)) next = d;
  }
  if (next == 0) {
    if (c->armed_at != 0) {
      uv_timer_stop(&c->timer);
      c->armed_at = 0;
    }
    return;
  }
  if (c->armed_at != 0 && c->armed_at <= next) return;
  uv_timer_start(&c->timer, on_timer, next > now ? next - now : 0, 0);
  c->armed_at = next;
}

void set_read_deadline(ServerConn* c, milliseconds timeout) {
  uint64_t t = to_ms(timeout);
  c->read_deadline = t ? now_of(c) + t : 0;
  arm(c);
}

// Work that must not run inside a caller's Response method (it would call other handlers
// or callbacks re-entrantly) runs from the connection's timer, at once.
void defer(ServerConn* c) {
  c->deferred = true;
  arm(c);
}

void on_alloc(uv_handle_t*, size_t, uv_buf_t* buf) { *buf = uv_buf_init(g_read_buffer, kReadBufferBytes); }

void on_peer_gone(ServerConn* c, ssize_t err) {
  if (c->closing) return;
  if (c->lingering) {
    conn::close_now(c);
    return;
  }
  for (const auto& ex : c->queue) {
    if (ex->dispatched && !ex->finished) {
      conn::abort(c, err == UV_EOF ? "client closed the connection" : uv_strerror(static_cast<int>(err)));
      return;
    }
  }
  if (err != UV_EOF) {
    conn::close_now(c);
    return;
  }
  // The client half-closed with every request answered: let queued bytes go, then close.
  uv_read_stop(stream_of(c));
  c->input_done = true;
  if (c->parsing != nullptr) {
    c->queue.pop_back();
    c->parsing = nullptr;
  }
  c->close_when_flushed = true;
  c->linger_on_close = false;
  if (c->out.idle() && c->queue.empty()) conn::close_now(c);
}

void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  auto* c = static_cast<ServerConn*>(s->data);
  if (n > 0) {
    if (c->closing || c->input_done || c->draining) return;  // discarded
    feed(c, buf->base, static_cast<size_t>(n));
  } else if (n < 0) {
    on_peer_gone(c, n);
  }
}

void start_reading(ServerConn* c) { uv_read_start(stream_of(c), on_alloc, on_read); }

void pause_input(ServerConn* c, const char* data, size_t len) {
  c->pending_input.assign(data, len);
  c->input_paused = true;
  uv_read_stop(stream_of(c));
}

void send_continue(ServerConn* c, Exchange* ex) {
  ex->continue_due = false;
  int r = c->out.write("HTTP/1.1 100 Continue\r\n\r\n");
  if (r < 0) conn::write_failed(c, r);
}

void notify_writable(ServerConn* c) {
  if (c->closing || c->queue.empty()) return;
  std::shared_ptr<Exchange> ex = c->queue.front();  // alive across the callback
  if (!ex->paused || c->out.queued() >= opts(c).write_high_water) return;
  ex->paused = false;
  if (ex->on_writable) {
    auto fn = ex->on_writable;  // a copy: the callback may install another
    fn();
  }
}

void run_deferred(ServerConn* c) {
  if (c->input_paused && !c->input_done && !c->draining && c->queue.size() < opts(c).max_pipelined) {
    c->input_paused = false;
    start_reading(c);
    std::string input = std::move(c->pending_input);
    c->pending_input.clear();
    feed(c, input.data(), input.size());
    if (c->closing) return;
  }
  notify_writable(c);
}

void start_close(ServerConn* c) {
  if (c->closing || c->lingering) return;
  if (!c->linger_on_close || to_ms(opts(c).linger_timeout) == 0) {
    conn::close_now(c);
    return;
  }
  // Closing with unread request bytes in the kernel would send a reset that can destroy
  // the reply before the client reads it: send FIN, drain input for a while, then close.
  c->lingering = true;
  c->input_done = true;
  c->stall_deadline = 0;
  set_read_deadline(c, opts(c).linger_timeout);
  if (c->input_paused) {
    c->input_paused = false;
    start_reading(c);
  }
  int r = uv_shutdown(&c->shutdown_req, stream_of(c), [](uv_shutdown_t* req, int status) {
    auto* cc = static_cast<ServerConn*>(req->handle->data);
    if (status < 0 && !cc->closing) conn::close_now(cc);
  });
  if (r < 0) conn::close_now(c);
}

void on_timer(uv_timer_t* t) {
  auto* c = static_cast<ServerConn*>(t->data);
  c->armed_at = 0;
  if (c->closing) return;
  uint64_t now = now_of(c);
  if (c->deferred) {
    c->deferred = false;
    run_deferred(c);
    if (c->closing) return;
  }
  if (c->stall_deadline != 0 && now >= c->stall_deadline) {
    conn::abort(c, "the client stopped reading its response");
    return;
  }
  if (c->read_deadline != 0 && now >= c->read_deadline) {
    c->read_deadline = 0;
    if (c->lingering) {
      conn::close_now(c);
      return;
    }
    if (c->parsing != nullptr) {
      const auto& o = opts(c);
      std::string what = c->in_body ? "request body not received within " + std::to_string(to_ms(o.body_timeout))
                                    : "request headers not received within " + std::to_string(to_ms(o.header_timeout));
      conn::refuse(c, 408, what + " ms", false);
      return;
    }
    if (c->queue.empty()) {
      conn::close_now(c);  // idle keep-alive connection
      return;
    }
  }
  arm(c);
}

// ---------------------------------------------------------------- parser callbacks

int count_header_bytes(ServerConn* c, size_t n) {
  c->header_bytes += n;
  if (c->header_bytes > opts(c).max_header_bytes) {
    c->refuse_status = 431;
    c->refuse_message = "request headers larger than " + std::to_string(opts(c).max_header_bytes) + " bytes";
    return HPE_USER;
  }
  return 0;
}

int on_message_begin(llhttp_t* p) {
  ServerConn* c = conn_of(p);
  auto ex = std::make_shared<Exchange>();
  ex->loop = &c->core->event_loop();
  ex->conn = c;
  c->parsing = ex.get();
  c->queue.push_back(std::move(ex));
  c->header_bytes = 0;
  c->in_body = false;
  c->field.clear();
  c->value.clear();
  set_read_deadline(c, opts(c).header_timeout);
  return 0;
}

int on_url(llhttp_t* p, const char* at, size_t len) {
  ServerConn* c = conn_of(p);
  c->parsing->req.target.append(at, len);
  return count_header_bytes(c, len);
}

int on_header_field(llhttp_t* p, const char* at, size_t len) {
  ServerConn* c = conn_of(p);
  c->field.append(at, len);
  return count_header_bytes(c, len);
}

int on_header_value(llhttp_t* p, const char* at, size_t len) {
  ServerConn* c = conn_of(p);
  c->value.append(at, len);
  return count_header_bytes(c, len);
}

int on_header_value_complete(llhttp_t* p) {
  ServerConn* c = conn_of(p);
  c->parsing->req.headers.add(std::move(c->field), std::move(c->value));
  c->field.clear();
  c->value.clear();
  return count_header_bytes(c, 4);  // ": " and CRLF
}

int on_headers_complete(llhttp_t* p) {
  ServerConn* c = conn_of(p);
  Exchange* ex = c->parsing;
  const ServerOptions& o = opts(c);
  p->upgrade = 0;  // no protocol switch: an Upgrade request is answered as plain HTTP/1.1
  ex->req.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
  ex->req.http_minor = p->http_minor;
  ex->no_body = p->method == HTTP_HEAD;
  bool has_length = (p->flags & F_CONTENT_LENGTH) != 0;
  if (has_length && p->content_length > o.max_payload_size) {
    c->refuse_status = 413;
    c->refuse_message = "request body of " + std::to_string(p->content_length) + " bytes is larger than the limit of " +
                        std::to_string(o.max_payload_size);
    return HPE_USER;
  }
  bool has_body = (p->flags & F_CHUNKED) != 0 || (has_length && p->content_length > 0);
  if (has_length) ex->req.body.reserve(std::min<uint64_t>(p->content_length, 1u << 20));
  if (has_body) {
    c->in_body = true;
    set_read_deadline(c, o.body_timeout);
    if (p->http_minor >= 1 && ex->req.headers.has_token("Expect", "100-continue")) {
      ex->continue_due = true;
      if (conn::is_head(c, ex)) send_continue(c, ex);
    }
  }
  return 0;
}

int on_body(llhttp_t* p, const char* at, size_t len) {
  ServerConn* c = conn_of(p);
  std::string& body = c->parsing->req.body;
  if (body.size() + len > opts(c).max_payload_size) {
    c->refuse_status = 413;
    c->refuse_message = "request body larger than the limit of " + std::to_string(opts(c).max_payload_size) + " bytes";
    return HPE_USER;
  }
  body.append(at, len);
  return 0;
}

int on_message_complete(llhttp_t* p) {
  ServerConn* c = conn_of(p);
  c->parsing->keep_alive = llhttp_should_keep_alive(p) != 0;
  c->parsing->continue_due = false;
  c->completed = c->parsing;
  c->parsing = nullptr;
  c->in_body = false;
  c->read_deadline = 0;
  return HPE_PAUSED;  // dispatch outside llhttp_execute, then resume
}

const llhttp_settings_t* parser_settings() {
  static const llhttp_settings_t settings = [] {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_message_begin = on_message_begin;
    s.on_url = on_url;
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

void feed(ServerConn* c, const char* data, size_t len) {
  while (len > 0 && !c->closing && !c->input_done) {
    llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
    if (err == HPE_OK) return;
    if (err == HPE_PAUSED) {
      size_t used = static_cast<size_t>(llhttp_get_error_pos(&c->parser) - data);
      llhttp_resume(&c->parser);
      data += used;
      len -= used;
      if (Exchange* done = std::exchange(c->completed, nullptr)) {
        if (!c->queue.empty() && c->queue.back().get() == done) {
          std::shared_ptr<Exchange> ex = c->queue.back();  // nothing was queued after it
          c->core->dispatch(ex);
        }
      }
      if (c->closing || c->input_done || c->draining) return;
      if (c->queue.size() >= opts(c).max_pipelined) {
        pause_input(c, data, len);
        return;
      }
      continue;
    }
    if (c->refuse_status != 0) {
      conn::refuse(c, c->refuse_status, c->refuse_message, true);
    } else {
      conn::refuse(c, 400, std::string("malformed HTTP request: ") + llhttp_get_error_reason(&c->parser), true);
    }
    return;
  }
}

void on_handle_closed(uv_handle_t* h) {
  auto* c = static_cast<ServerConn*>(h->data);
  if (--c->open_handles > 0) return;
  ServerCore* core = c->core;
  auto notify = std::move(c->notify_on_close);
  if (core != nullptr) core->unlink(c);
  delete c;
  for (auto& ex : notify) {
    auto fn = std::move(ex->on_close);
    ex->on_close = nullptr;
    ex->on_writable = nullptr;
    if (fn) fn();
  }
  if (core != nullptr) core->check_shutdown_done();
}

}  // namespace

ServerConn::ServerConn(ServerCore* owner)
    : core(owner), out(reinterpret_cast<uv_stream_t*>(&tcp), this, [](void* self, int status) {
        auto* c = static_cast<ServerConn*>(self);
        if (c->closing) return;
        if (status < 0) {
          conn::write_failed(c, status);
          return;
        }
        uint64_t stall = to_ms(opts(c).write_stall_timeout);
        c->stall_deadline = (c->out.idle() || stall == 0) ? 0 : now_of(c) + stall;
        if (c->out.idle() && c->close_when_flushed) {
          start_close(c);
          return;
        }
        notify_writable(c);
        arm(c);
      }) {}

// ---------------------------------------------------------------- conn:: operations

namespace conn {

bool is_head(const ServerConn* c, const Exchange* ex) { return !c->queue.empty() && c->queue.front().get() == ex; }

void after_output(ServerConn* c) {
  if (c->closing || c->out.idle() || c->stall_deadline != 0) return;
  uint64_t stall = to_ms(opts(c).write_stall_timeout);
  if (stall == 0) return;
  c->stall_deadline = now_of(c) + stall;
  arm(c);
}

void exchange_finished(ServerConn* c) {
  if (c->closing) return;
  const ServerOptions& o = opts(c);
  while (!c->queue.empty() && c->queue.front()->finished) {
    std::shared_ptr<Exchange> done = std::move(c->queue.front());
    c->queue.pop_front();
    done->conn = nullptr;
    if (done->close_after) {
      // Requests behind a closing response are never answered.
      for (auto& rest : c->queue) {
        rest->conn = nullptr;
        if (rest->dispatched && !rest->finished) c->notify_on_close.push_back(rest);
      }
      c->queue.clear();
      c->parsing = nullptr;
      c->input_done = true;
      c->close_when_flushed = true;
      c->linger_on_close = done->linger;
      break;
    }
    if (c->queue.empty()) break;
    Exchange* next = c->queue.front().get();
    if (!next->held.empty()) {
      std::string held = std::move(next->held);
      next->held.clear();
      int r = c->out.write_owned({}, std::move(held));
      if (r < 0) {
        write_failed(c, r);
        return;
      }
      after_output(c);
    }
    if (next->continue_due) send_continue(c, next);
    if (next->paused) defer(c);
  }
  if (!c->close_when_flushed && c->queue.empty()) {
    if (c->draining) {
      c->close_when_flushed = true;
      c->linger_on_close = false;
    } else {
      set_read_deadline(c, o.keep_alive_timeout);
    }
  }
  if (c->close_when_flushed) {
    if (c->out.idle()) start_close(c);
    return;
  }
  if (c->input_paused && c->queue.size() < o.max_pipelined) defer(c);
}

void abort(ServerConn* c, std::string_view why) {
  if (c->closing) return;
  spdlog::debug("http: closing connection: {}", why);
  close_now(c);
}

void write_failed(ServerConn* c, int status) {
  if (c->closing) return;
  abort(c, status == UV_ECANCELED ? "write cancelled" : uv_strerror(status));
}

void close_now(ServerConn* c) {
  if (c->closing) return;
  c->closing = true;
  for (auto& ex : c->queue) {
    ex->conn = nullptr;
    if (ex->dispatched && !ex->finished) c->notify_on_close.push_back(ex);
  }
  c->queue.clear();
  c->parsing = nullptr;
  c->completed = nullptr;
  if (c->core != nullptr) c->core->conn_closing(c);
  uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&c->timer), on_handle_closed);
}

void start(ServerConn* c) {
  llhttp_init(&c->parser, HTTP_REQUEST, parser_settings());
  c->parser.data = c;
  uv_tcp_nodelay(&c->tcp, 1);
  start_reading(c);
  // Nothing is owed to a connection that has not sent a byte: the header timeout applies
  // from the start, and it closes quietly.
  const auto& o = opts(c);
  set_read_deadline(c, to_ms(o.header_timeout) ? o.header_timeout : o.keep_alive_timeout);
}

void refuse(ServerConn* c, int status, const std::string& message, bool linger) {
  if (c->closing) return;
  c->input_done = true;
  c->pending_input.clear();
  c->read_deadline = 0;
  std::shared_ptr<Exchange> ex;
  if (c->parsing != nullptr) {
    ex = c->queue.back();
    c->parsing = nullptr;
  } else {
    ex = std::make_shared<Exchange>();
    ex->loop = &c->core->event_loop();
    ex->conn = c;
    c->queue.push_back(ex);
  }
  ex->dispatched = true;
  ex->keep_alive = false;
  ex->close_after = true;
  ex->linger = linger;
  spdlog::debug("http: refusing a request: {} {}", status, message);
  exchange_send_error(*ex, status, message);
}

void drain(ServerConn* c) {
  if (c->closing || c->draining) return;
  c->draining = true;
  c->read_deadline = 0;
  if (c->parsing != nullptr) {  // a request still arriving is not served
    c->queue.pop_back();
    c->parsing = nullptr;
  }
  if (c->queue.empty()) {
    c->close_when_flushed = true;
    c->linger_on_close = false;
    if (c->out.idle()) start_close(c);
  }
  arm(c);
}

}  // namespace conn

}  // namespace pdctl::net::detail

// HttpClient: pools per upstream, the wait queue, name resolution, the public API.
#include "net/http_client.h"

#include <algorithm>
#include <cstring>

#include <spdlog/spdlog.h>

#include "net/client_core.h"
#include "net/uv_error.h"

namespace pdctl::net {

namespace detail {

namespace {

uint64_t to_ms(milliseconds d) { return d.count() > 0 ? static_cast<uint64_t>(d.count()) : 0; }

// Parses an IP literal into `out`.
bool parse_ip(const std::string& host, uint16_t port, sockaddr_storage* out) {
  if (host.find(':') != std::string::npos) {
    return uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(out)) == 0;
  }
  return uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(out)) == 0;
}

void fail_waiters(Pool* p, const Status& st) {
  std::deque<std::shared_ptr<Call>> failed;
  failed.swap(p->waiting);
  for (auto& call : failed) finish_call(call, st);
}

}  // namespace

// A getaddrinfo in flight; outlives its pool if the client goes first (pool = nullptr).
struct Resolve {
  uv_getaddrinfo_t req{};
  Pool* pool = nullptr;
};

namespace {

void on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* res) {
  auto* r = static_cast<Resolve*>(req->data);
  Pool* p = r->pool;
  if (p != nullptr) {
    p->resolving = nullptr;
    if (status == 0) {
      // IPv4 first: "localhost" must reach servers bound to 127.0.0.1 only.
      const addrinfo* pick = nullptr;
      for (const addrinfo* a = res; a != nullptr; a = a->ai_next) {
        if (a->ai_family == AF_INET) {
          pick = a;
          break;
        }
        if (pick == nullptr && a->ai_family == AF_INET6) pick = a;
      }
      if (pick == nullptr) {
        status = UV_EAI_NODATA;
      } else {
        std::memcpy(&p->addr, pick->ai_addr, pick->ai_addrlen);
        p->have_addr = true;
        p->addr_expires = uv_now(req->loop) + to_ms(p->core->options().dns_cache_ttl);
      }
    }
  }
  uv_freeaddrinfo(res);
  delete r;
  if (p == nullptr) return;
  if (status != 0) {
    fail_waiters(p, uv_error(status, "resolve " + p->endpoint.host));
    return;
  }
  p->core->dispatch(p);
}

void expire_queue(Pool* p) {
  uint64_t timeout = to_ms(p->core->options().queue_timeout);
  uint64_t now = uv_now(p->core->uv());
  while (!p->waiting.empty() && now >= p->waiting.front()->queued_at + timeout) {
    std::shared_ptr<Call> call = std::move(p->waiting.front());
    p->waiting.pop_front();
    finish_call(call, Status::timeout("no connection to " + p->where + " became free within " +
                                      std::to_string(timeout) + " ms"));
  }
  if (!p->waiting.empty()) {
    uint64_t due = p->waiting.front()->queued_at + timeout;
    p->queue_timer.start(milliseconds(due > now ? due - now : 0), [p] { expire_queue(p); });
  }
}

}  // namespace

Pool::Pool(ClientCore* owner, Endpoint to)
    : core(owner), endpoint(std::move(to)), where(endpoint.to_string()), queue_timer(owner->event_loop()) {
  numeric = parse_ip(endpoint.host, endpoint.port, &addr);
  have_addr = numeric;
}

Pool::~Pool() {
  if (resolving != nullptr) {
    resolving->pool = nullptr;
    uv_cancel(reinterpret_cast<uv_req_t*>(&resolving->req));
  }
  for (auto& call : waiting) {
    call->state = Call::State::kDone;  // dropped without a callback
    call->pool = nullptr;
  }
  for (ClientConn* c = conns; c != nullptr;) {
    ClientConn* next = c->next;
    c->pool = nullptr;  // its close callback frees it alone
    c->prev = c->next = nullptr;
    if (c->call) {
      c->call->state = Call::State::kDone;
      c->call->pool = nullptr;
    }
    cconn::close(c);
    c = next;
  }
}

ClientCore::ClientCore(EventLoop& loop, ClientOptions options)
    : LoopResource(loop), loop_ptr_(&loop), opts_(std::move(options)) {
  if (opts_.max_connections_per_upstream == 0) opts_.max_connections_per_upstream = 1;
}

ClientCore::~ClientCore() {
  detach_from_loop();
  pools_.clear();
}

void ClientCore::on_loop_stop() { pools_.clear(); }

const Pool* ClientCore::find_pool(const Endpoint& to) const {
  auto it = pools_.find(to.to_string());
  return it == pools_.end() ? nullptr : it->second.get();
}

std::shared_ptr<Call> ClientCore::submit(const Endpoint& to, ClientRequest req, ResponseHandlers handlers) {
  auto call = std::make_shared<Call>();
  call->req = std::move(req);
  call->handlers = std::move(handlers);
  if (loop() == nullptr) {
    call->state = Call::State::kDone;  // the loop has stopped: nothing will ever run
    return call;
  }
  std::string key = to.to_string();
  auto it = pools_.find(key);
  if (it == pools_.end()) it = pools_.emplace(key, std::make_unique<Pool>(this, to)).first;
  Pool* p = it->second.get();
  if (p->waiting.empty() && !p->idle.empty()) {
    ClientConn* c = p->idle.back();
    p->idle.pop_back();
    cconn::assign(c, call);
    return call;
  }
  // Requests that a connect in progress will serve are not counted as queued.
  size_t queued = p->waiting.size() - std::min(p->waiting.size(), p->connecting);
  if (queued >= opts_.max_queued_per_upstream) {
    fail_later(call, Status::resource_exhausted("more than " + std::to_string(opts_.max_queued_per_upstream) +
                                                " requests waiting for a connection to " + p->where));
    return call;
  }
  call->state = Call::State::kQueued;
  call->pool = p;
  call->queued_at = uv_now(uv());
  p->waiting.push_back(call);
  dispatch(p);
  return call;
}

void ClientCore::requeue_front(Pool* p, std::shared_ptr<Call> call) {
  call->state = Call::State::kQueued;
  call->pool = p;
  p->waiting.push_front(std::move(call));
  dispatch(p);
}

void ClientCore::fail_later(std::shared_ptr<Call> call, Status st) {
  call->state = Call::State::kNew;
  call->pool = nullptr;
  loop_ptr_->post([call = std::move(call), st = std::move(st)] { finish_call(call, st); });
}

void ClientCore::dispatch(Pool* p) {
  while (!p->waiting.empty() && !p->idle.empty()) {
    ClientConn* c = p->idle.back();
    p->idle.pop_back();
    std::shared_ptr<Call> call = std::move(p->waiting.front());
    p->waiting.pop_front();
    cconn::assign(c, std::move(call));
  }
  if (p->waiting.empty()) return;
  if (!p->numeric && (!p->have_addr || uv_now(uv()) >= p->addr_expires)) {
    if (p->resolving != nullptr) return;
    auto* r = new Resolve;
    r->req.data = r;
    r->pool = p;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    std::string port = std::to_string(p->endpoint.port);
    int rc = uv_getaddrinfo(uv(), &r->req, on_resolved, p->endpoint.host.c_str(), port.c_str(), &hints);
    if (rc != 0) {
      delete r;
      Status st = uv_error(rc, "resolve " + p->endpoint.host);
      std::deque<std::shared_ptr<Call>> failed;
      failed.swap(p->waiting);
      for (auto& call : failed) fail_later(std::move(call), st);
      return;
    }
    p->resolving = r;
    return;
  }
  while (p->connecting < p->waiting.size() && p->open < opts_.max_connections_per_upstream) cconn::open(p);
  if (to_ms(opts_.queue_timeout) != 0 && !p->queue_timer.active()) {
    uint64_t due = p->waiting.front()->queued_at + to_ms(opts_.queue_timeout);
    uint64_t now = uv_now(uv());
    p->queue_timer.start(milliseconds(due > now ? due - now : 0), [p] { expire_queue(p); });
  }
}

}  // namespace detail

// ---------------------------------------------------------------- RequestHandle

using detail::Call;

void RequestHandle::cancel() {
  if (!call_ || call_->state == Call::State::kDone) return;
  Call::State was = call_->state;
  call_->state = Call::State::kDone;  // from here no callback runs
  detail::Pool* p = call_->pool;
  if (was == Call::State::kQueued && p != nullptr) {
    std::erase(p->waiting, call_);
  } else if (was == Call::State::kActive && call_->conn != nullptr) {
    detail::cconn::close(call_->conn);  // the upstream sees the connection close
    if (p != nullptr) p->core->dispatch(p);
  }
  call_->pool = nullptr;
  call_->conn = nullptr;
  // Callbacks may capture this very handle; release them unless one is running (then the
  // connection code releases them when it returns).
  if (!call_->in_callback) call_->handlers = ResponseHandlers{};
}

void RequestHandle::pause_body() {
  if (call_ && call_->state == Call::State::kActive && call_->conn) detail::cconn::pause(call_->conn);
}

void RequestHandle::resume_body() {
  if (call_ && call_->state == Call::State::kActive && call_->conn) detail::cconn::resume(call_->conn);
}

bool RequestHandle::active() const { return call_ && call_->state != Call::State::kDone; }

// ---------------------------------------------------------------- HttpClient

HttpClient::HttpClient(EventLoop& loop, ClientOptions options)
    : core_(std::make_unique<detail::ClientCore>(loop, std::move(options))) {}

HttpClient::~HttpClient() = default;

RequestHandle HttpClient::request(const Endpoint& to, ClientRequest req, ResponseHandlers handlers) {
  return detail::ClientCore::make_handle(core_->submit(to, std::move(req), std::move(handlers)));
}

RequestHandle HttpClient::fetch(const Endpoint& to, ClientRequest req, std::function<void(Result<HttpResponse>)> done) {
  auto out = std::make_shared<HttpResponse>();
  if (req.max_body_bytes == 0) req.max_body_bytes = core_->options().max_buffered_body;
  uint64_t limit = req.max_body_bytes;
  ResponseHandlers h;
  h.on_head = [out, limit](const ResponseHead& head) {
    out->status = head.status;
    out->headers = head.headers;
    std::string_view cl = head.headers.get("Content-Length");
    size_t n = 0;
    for (char ch : cl) {
      if (ch < '0' || ch > '9' || n > (1ull << 40)) break;
      n = n * 10 + static_cast<size_t>(ch - '0');
    }
    out->body.reserve(std::min<uint64_t>(n, limit));
  };
  h.on_body = [out](std::string_view bytes) { out->body.append(bytes); };
  h.on_done = [out, done = std::move(done)](const Status& st) {
    if (st.is_ok()) {
      done(std::move(*out));
    } else {
      done(st);
    }
  };
  return request(to, std::move(req), std::move(h));
}

size_t HttpClient::open_connections(const Endpoint& to) const {
  const detail::Pool* p = core_->find_pool(to);
  return p == nullptr ? 0 : p->open;
}

size_t HttpClient::idle_connections(const Endpoint& to) const {
  const detail::Pool* p = core_->find_pool(to);
  return p == nullptr ? 0 : p->idle.size();
}

}  // namespace pdctl::net

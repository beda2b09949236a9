#include "roles/pd/pd_decode.h"

#include <unistd.h>

#include <random>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "roles/worker/api_call.h"

namespace pdctl::pd {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
constexpr milliseconds kSweepPeriod{100};

std::string make_decode_id() {
  char host[256] = {0};
  if (::gethostname(host, sizeof(host) - 1) != 0) host[0] = 0;
  std::random_device rd;
  return fmt::format("{}-{}-{:08x}", host, static_cast<long>(::getpid()), rd());
}

std::string error_message(const net::HttpResponse& r) {
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (j.is_object() && j.contains("error") && j["error"].is_object() && j["error"].contains("message") &&
      j["error"]["message"].is_string()) {
    return j["error"]["message"].get<std::string>();
  }
  return fmt::format("HTTP {}", r.status);
}

}  // namespace

struct DecodeSide::Room {
  enum class State { kBootstrapping, kWaitingForInput, kSuccess, kFailed };
  uint64_t id = 0;
  uint64_t epoch = 0;
  std::string rid;
  std::string prefill;        // "host:port"
  net::Endpoint endpoint;     // prefill's bootstrap server
  State state = State::kBootstrapping;
  Clock::time_point created = Clock::now();
  Clock::time_point registered_at{};
  int64_t prompt_len = 0;
  uint64_t prompt_hash = 0;
  std::vector<int32_t> pages;  // held (one reference each) until released
  bool pages_held = false;
  bool register_sent = false;  // prefill may write into the pages from now on
  bool engine_done = false;
  Status failure;
  engine::OutputSink sink;
};

struct DecodeSide::Prefill {
  enum class State { kIdle, kConnecting, kReady };
  net::Endpoint endpoint;
  State state = State::kIdle;
  Clock::time_point last_ok = Clock::now();
  bool heartbeat_in_flight = false;
};

DecodeSide::DecodeSide(net::EventLoop& loop, PdSettings settings, PdMetrics* metrics)
    : loop_(loop), settings_(settings), metrics_(metrics), decode_id_(make_decode_id()) {
  net::ClientOptions co;
  co.connect_timeout = std::min(settings_.bootstrap_timeout, milliseconds(5'000));
  co.response_header_timeout = settings_.bootstrap_timeout;
  co.queue_timeout = settings_.bootstrap_timeout;
  client_ = std::make_unique<net::HttpClient>(loop, co);
  timer_ = std::make_unique<net::Timer>(loop);
}

DecodeSide::~DecodeSide() = default;

engine::KvHandoffHooks DecodeSide::hooks() {
  engine::KvHandoffHooks h;
  h.on_kv_reserved = [this](const std::string& rid, std::vector<int32_t> pages) { on_reserved(rid, std::move(pages)); };
  return h;
}

void DecodeSide::attach(engine::EngineService* engine, kv::TransferEngine* transfer, const KvLayout& layout) {
  {
    std::lock_guard lk(mu_);
    engine_ = engine;
    transfer_ = transfer;
    layout_ = layout;
  }
  timer_->start(kSweepPeriod, kSweepPeriod, [this] { sweep(); });
}

void DecodeSide::stop() {
  timer_->cancel();
  client_.reset();  // no callback runs after this
}

// ---------------------------------------------------------------- requests (loop thread)

Status DecodeSide::submit(engine::EngineService& engine, const worker::ItemSpec& item, engine::OutputSink sink,
                          bool internal) {
  if (internal) return engine.submit(item.req, std::move(sink));
  PDCTL_RETURN_IF_ERROR(check_pd_item(item, "decode"));
  const worker::Bootstrap& b = item.bootstrap;
  if (item.req.logprob_start_len >= 0) {
    return Status::unsupported("prompt logprobs (logprob_start_len) are not available on a PD decode worker");
  }
  if (!client_) return Status::unavailable("the server is shutting down");
  const uint64_t room_id = static_cast<uint64_t>(*b.room);
  net::Endpoint ep{*b.host, static_cast<uint16_t>(b.port.value_or(kDefaultBootstrapPort))};
  const std::string key = ep.to_string();
  engine::GenerateRequest req = item.req;
  req.kv_handoff = engine::GenerateRequest::KvHandoff::kReceive;
  {
    std::lock_guard lk(mu_);
    if (rooms_.contains(room_id)) {
      return Status::already_exists(fmt::format("bootstrap_room {} is in use by another request", room_id));
    }
    if (room_of_rid_.contains(req.rid)) return Status::already_exists(fmt::format("a request with rid '{}' is live", req.rid));
    auto room = std::make_unique<Room>();
    room->id = room_id;
    room->epoch = ++epoch_seq_;
    room->rid = req.rid;
    room->prefill = key;
    room->endpoint = ep;
    room->prompt_len = static_cast<int64_t>(req.input_ids.size());
    room->prompt_hash = prompt_hash(req.input_ids);
    room->sink = std::move(sink);
    rooms_.emplace(room_id, std::move(room));
    room_of_rid_[req.rid] = room_id;
    publish_locked();
  }
  auto& p = prefills_[key];
  if (!p) {
    p = std::make_unique<Prefill>();
    p->endpoint = ep;
  }
  if (p->state == Prefill::State::kIdle) connect(key);
  Status st = engine.submit(std::move(req), [self = shared_from_this(), room_id](engine::OutputChunk&& c) {
    self->on_chunk(room_id, std::move(c));
  });
  if (!st.is_ok()) {
    std::lock_guard lk(mu_);
    auto it = rooms_.find(room_id);
    if (it != rooms_.end()) {
      room_of_rid_.erase(it->second->rid);
      rooms_.erase(it);
    }
    publish_locked();
  }
  return st;
}

// ---------------------------------------------------------------- engine thread

void DecodeSide::on_reserved(const std::string& rid, std::vector<int32_t> pages) {
  uint64_t room_id = 0;
  {
    std::lock_guard lk(mu_);
    auto it = room_of_rid_.find(rid);
    Room* room = it == room_of_rid_.end() ? nullptr : rooms_.at(it->second).get();
    if (room == nullptr || room->state == Room::State::kFailed) {
      // Failed while queued (its abort is on the way): nothing was registered.
      if (engine_) engine_->release_pages(std::move(pages));
      return;
    }
    room->pages = std::move(pages);
    room->pages_held = true;
    room_id = room->id;
  }
  loop_.post([self = shared_from_this(), room_id] { self->try_register(room_id); });
}

void DecodeSide::on_chunk(uint64_t room_id, engine::OutputChunk&& chunk) {
  engine::OutputSink sink;
  {
    std::lock_guard lk(mu_);
    auto it = rooms_.find(room_id);
    if (it == rooms_.end()) return;  // cannot happen: a room lives until its final chunk
    Room& room = *it->second;
    sink = room.sink;
    if (chunk.finished) {
      room.engine_done = true;
      room_of_rid_.erase(room.rid);
      if (room.state != Room::State::kSuccess) {
        // Aborted before its KV came (client gone, /abort_request, shutdown) or failed here.
        const engine::FinishInfo& f = chunk.finish;
        fail_locked(room, Status(f.abort_code == Errc::kOk ? Errc::kCancelled : f.abort_code, f.message), false);
        if (!room.failure.is_ok() && chunk.finish.type == engine::FinishInfo::Type::kAbort) {
          chunk.finish.abort_code = room.failure.code();
          chunk.finish.message = room.failure.message();
        }
      }
      erase_if_done_locked(room_id);
    }
  }
  if (sink) sink(std::move(chunk));
}

// ---------------------------------------------------------------- transfer thread

void DecodeSide::on_message(std::string message) {
  auto n = decode_notice(message);
  if (!n) {
    spdlog::warn("PD: a malformed notice: {}", n.status().message());
    return;
  }
  std::lock_guard lk(mu_);
  auto it = rooms_.find(n->room);
  if (it == rooms_.end() || it->second->epoch != n->epoch || !it->second->register_sent) {
    spdlog::debug("PD: a stale notice for room {} (epoch {}) ignored", n->room, n->epoch);
    return;
  }
  Room& room = *it->second;
  if (room.state == Room::State::kSuccess) return;  // a duplicate
  if (room.state == Room::State::kFailed) {
    // Failed here meanwhile (timeout): prefill is done with the pages either way.
    release_locked(room);
    erase_if_done_locked(room.id);
    return;
  }
  if (!n->ok) {
    fail_locked(room, Status::unavailable("the prefill worker failed the request: " + n->error), false);
    release_locked(room);  // nothing of the room is in flight any more
    erase_if_done_locked(room.id);
    return;
  }
  room.state = Room::State::kSuccess;
  if (metrics_) {
    metrics_->kv_ready(std::chrono::duration<double>(Clock::now().time_since_epoch()).count());
    const double secs = std::chrono::duration<double>(Clock::now() - room.registered_at).count();
    const uint64_t bytes = static_cast<uint64_t>(room.prompt_len) * geometry_of(layout_).bytes_per_token();
    metrics_->transferred(bytes, secs);
  }
  engine_->kv_arrived(room.rid, n->token, n->logprob);
  release_locked(room);  // after kv_arrived: the request holds its own reference
  erase_if_done_locked(room.id);
  publish_locked();
}

// ---------------------------------------------------------------- under mu_

void DecodeSide::fail_locked(Room& room, Status why, bool bootstrap) {
  if (room.state == Room::State::kFailed || room.state == Room::State::kSuccess) return;
  if (why.code() != Errc::kCancelled) spdlog::warn("PD room {} ({}) failed: {}", room.id, room.rid, why.message());
  room.state = Room::State::kFailed;
  room.failure = std::move(why);
  if (metrics_ && room.failure.code() != Errc::kCancelled) {
    (bootstrap ? metrics_->bootstrap_failed() : metrics_->transfer_failed());
  }
  if (!room.engine_done && engine_) engine_->abort(room.rid, room.failure.message());
  if (room.pages_held) {
    if (!room.register_sent) {
      release_locked(room);  // prefill never heard of these pages
    } else {
      // Prefill may still write: ask it to stop and wait for its answer.
      loop_.post([self = shared_from_this(), id = room.id] { self->send_cancel(id); });
    }
  }
  publish_locked();
}

void DecodeSide::release_locked(Room& room) {
  if (!room.pages_held) return;
  room.pages_held = false;
  if (engine_) engine_->release_pages(std::move(room.pages));
  room.pages.clear();
}

void DecodeSide::erase_if_done_locked(uint64_t room_id) {
  auto it = rooms_.find(room_id);
  if (it == rooms_.end()) return;
  Room& r = *it->second;
  if (!r.engine_done || r.pages_held) return;
  if (r.state != Room::State::kSuccess && r.state != Room::State::kFailed) return;
  rooms_.erase(it);
  publish_locked();
}

void DecodeSide::publish_locked() {
  if (!metrics_) return;
  int boot = 0, transfer = 0;
  for (const auto& [_, r] : rooms_) {
    if (r->state == Room::State::kBootstrapping) ++boot;
    if (r->state == Room::State::kWaitingForInput) ++transfer;
  }
  metrics_->set_queues(boot, transfer);
}

// ---------------------------------------------------------------- bootstrap (loop thread)

void DecodeSide::connect(const std::string& key) {
  auto pit = prefills_.find(key);
  if (pit == prefills_.end() || !client_) return;
  Prefill& p = *pit->second;
  p.state = Prefill::State::kConnecting;
  ConnectRequest c;
  c.decode_id = decode_id_;
  {
    std::lock_guard lk(mu_);
    c.layout = layout_;
    if (transfer_) c.descriptor = transfer_->descriptor();
  }
  net::ClientRequest req;
  req.method = "POST";
  req.target = "/pd/connect";
  req.headers = {{"Content-Type", "application/json"}};
  req.body = encode_connect(c);
  client_->fetch(p.endpoint, std::move(req), [self = shared_from_this(), key](Result<net::HttpResponse> r) {
    self->on_connected(key, std::move(r));
  });
}

void DecodeSide::on_connected(const std::string& key, Result<net::HttpResponse> r) {
  auto pit = prefills_.find(key);
  if (pit == prefills_.end()) return;
  Prefill& p = *pit->second;
  Status st;
  if (!r) {
    st = Status::unavailable(fmt::format("cannot reach the prefill bootstrap server {}: {}", key, r.status().message()));
  } else if (r->status != 200) {
    st = Status::unavailable(fmt::format("the prefill bootstrap server {} refused: {}", key, error_message(*r)));
  }
  if (!st.is_ok()) {
    spdlog::error("PD: {}", st.message());
    p.state = Prefill::State::kIdle;  // the next request tries again
    std::lock_guard lk(mu_);
    for (auto& [id, room] : rooms_) {
      if (room->prefill == key && room->state == Room::State::kBootstrapping && !room->register_sent) {
        fail_locked(*room, st, true);
      }
    }
    return;
  }
  spdlog::info("PD: connected to prefill {}", key);
  p.state = Prefill::State::kReady;
  p.last_ok = Clock::now();
  std::vector<uint64_t> ids;
  {
    std::lock_guard lk(mu_);
    for (auto& [id, room] : rooms_) {
      if (room->prefill == key && room->pages_held && !room->register_sent) ids.push_back(id);
    }
  }
  for (uint64_t id : ids) try_register(id);
}

void DecodeSide::try_register(uint64_t room_id) {
  if (!client_) return;
  RegisterRequest rr;
  net::Endpoint ep;
  {
    std::lock_guard lk(mu_);
    auto it = rooms_.find(room_id);
    if (it == rooms_.end()) return;
    Room& room = *it->second;
    if (!room.pages_held || room.register_sent || room.state != Room::State::kBootstrapping) return;
    auto pit = prefills_.find(room.prefill);
    if (pit == prefills_.end() || pit->second->state != Prefill::State::kReady) return;  // on_connected comes back
    room.register_sent = true;
    rr.decode_id = decode_id_;
    rr.room = room.id;
    rr.epoch = room.epoch;
    rr.prompt_len = room.prompt_len;
    rr.prompt_hash = room.prompt_hash;
    rr.pages = room.pages;
    ep = room.endpoint;
  }
  net::ClientRequest req;
  req.method = "POST";
  req.target = "/pd/register";
  req.headers = {{"Content-Type", "application/json"}};
  req.body = encode_register(rr);
  client_->fetch(ep, std::move(req), [self = shared_from_this(), room_id, epoch = rr.epoch](Result<net::HttpResponse> r) {
    self->on_registered(room_id, epoch, std::move(r));
  });
}

void DecodeSide::on_registered(uint64_t room_id, uint64_t epoch, Result<net::HttpResponse> r) {
  std::string reconnect;
  {
    std::lock_guard lk(mu_);
    auto it = rooms_.find(room_id);
    if (it == rooms_.end() || it->second->epoch != epoch) return;
    Room& room = *it->second;
    if (r && r->status == 200) {
      if (room.state == Room::State::kBootstrapping) {
        room.state = Room::State::kWaitingForInput;
        room.registered_at = Clock::now();
      }
      publish_locked();
      return;
    }
    if (r && r->status == 404 && room.state == Room::State::kBootstrapping) {
      // Prefill does not know this decode (it restarted): connect again, then register.
      room.register_sent = false;
      reconnect = room.prefill;
    } else {
      const std::string why = r ? error_message(*r) : r.status().message();
      // A refusal (r ok, not 200) means prefill took nothing; a lost reply is treated as a
      // registration that may have been taken (the cancel settles it).
      if (r) room.register_sent = false;
      fail_locked(room, Status::unavailable(fmt::format("registering room {} at prefill {}: {}", room_id, room.prefill, why)),
                  true);
      erase_if_done_locked(room_id);
      return;
    }
  }
  auto pit = prefills_.find(reconnect);
  if (pit != prefills_.end() && pit->second->state != Prefill::State::kConnecting) connect(reconnect);
}

void DecodeSide::send_cancel(uint64_t room_id) {
  CancelRequest c;
  net::Endpoint ep;
  {
    std::lock_guard lk(mu_);
    auto it = rooms_.find(room_id);
    if (it == rooms_.end() || !it->second->pages_held) return;
    c.decode_id = decode_id_;
    c.room = room_id;
    c.epoch = it->second->epoch;
    ep = it->second->endpoint;
  }
  auto done = [self = shared_from_this(), room_id, epoch = c.epoch](Result<net::HttpResponse> r) {
    if (!r) spdlog::warn("PD: cancelling room {}: {} (prefill is gone: its pages are free)", room_id, r.status().message());
    std::lock_guard lk(self->mu_);
    auto it = self->rooms_.find(room_id);
    if (it == self->rooms_.end() || it->second->epoch != epoch) return;
    self->release_locked(*it->second);
    self->erase_if_done_locked(room_id);
  };
  if (!client_) return;
  net::ClientRequest req;
  req.method = "POST";
  req.target = "/pd/cancel";
  req.headers = {{"Content-Type", "application/json"}};
  req.body = encode_cancel(c);
  req.response_header_timeout = settings_.waiting_timeout;
  client_->fetch(ep, std::move(req), std::move(done));
}

void DecodeSide::sweep() {
  const auto now = Clock::now();
  std::vector<std::string> beat;
  {
    std::lock_guard lk(mu_);
    for (auto& [id, r] : rooms_) {
      if (r->state == Room::State::kBootstrapping && now - r->created > settings_.bootstrap_timeout) {
        fail_locked(*r,
                    Status::timeout(fmt::format("room {}: the bootstrap with prefill {} did not complete within {} s", id,
                                                r->prefill,
                                                std::chrono::duration<double>(settings_.bootstrap_timeout).count())),
                    true);
      } else if (r->state == Room::State::kWaitingForInput && now - r->registered_at > settings_.waiting_timeout) {
        fail_locked(*r,
                    Status::timeout(fmt::format("room {}: the KV from prefill {} did not arrive within {} s", id,
                                                r->prefill,
                                                std::chrono::duration<double>(settings_.waiting_timeout).count())),
                    false);
      }
      if (r->register_sent && r->pages_held) beat.push_back(r->prefill);
    }
  }
  for (const std::string& key : beat) {
    auto pit = prefills_.find(key);
    if (pit == prefills_.end()) continue;
    Prefill& p = *pit->second;
    if (!p.heartbeat_in_flight && now - p.last_ok >= settings_.heartbeat_interval) heartbeat(key);
  }
}

void DecodeSide::heartbeat(const std::string& key) {
  auto pit = prefills_.find(key);
  if (pit == prefills_.end() || !client_) return;
  Prefill& p = *pit->second;
  p.heartbeat_in_flight = true;
  net::ClientRequest req;
  req.target = "/pd/health";
  req.response_header_timeout = std::max(settings_.heartbeat_interval * 3, milliseconds(1'000));
  client_->fetch(p.endpoint, std::move(req), [self = shared_from_this(), key](Result<net::HttpResponse> r) {
    auto pit = self->prefills_.find(key);
    if (pit == self->prefills_.end()) return;
    pit->second->heartbeat_in_flight = false;
    if (r && r->status == 200) {
      pit->second->last_ok = Clock::now();
      return;
    }
    self->prefill_lost(key, r ? Status::unavailable(fmt::format("HTTP {}", r->status)) : r.status());
  });
}

void DecodeSide::prefill_lost(const std::string& key, const Status& why) {
  spdlog::error("PD: prefill {} does not answer its heartbeat: {}", key, why.message());
  auto pit = prefills_.find(key);
  if (pit != prefills_.end()) pit->second->state = Prefill::State::kIdle;
  std::lock_guard lk(mu_);
  std::vector<uint64_t> ids;
  for (auto& [id, r] : rooms_) {
    if (r->prefill != key) continue;
    // Prefill is gone: nothing can write into the pages any more.
    r->register_sent = false;
    fail_locked(*r, Status::unavailable(fmt::format("the prefill worker {} is gone: {}", key, why.message())), false);
    release_locked(*r);
    ids.push_back(id);
  }
  for (uint64_t id : ids) erase_if_done_locked(id);
}

}  // namespace pdctl::pd

#include "roles/pd/pd_prefill.h"

#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "roles/worker/api_call.h"

namespace pdctl::pd {

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::chrono::milliseconds kSweepPeriod{100};

void reply_error(net::Response& resp, const Status& st) { worker::send_api_error(resp, st); }

void answer_connect(net::Response& resp, const KvLayout& layout) {
  nlohmann::json j;
  j["layout"] = layout_to_json(layout);
  j["pid"] = static_cast<long>(::getpid());
  resp.send(200, j.dump());
}

}  // namespace

struct PrefillSide::Room {
  enum class State { kBootstrapping, kWaitingForInput, kTransferring, kSuccess, kFailed };
  uint64_t id = 0;
  State state = State::kBootstrapping;
  Clock::time_point created = Clock::now();

  // The /generate item (has_request).
  bool has_request = false;
  std::string rid;
  int64_t prompt_len = 0;
  uint64_t prompt_hash = 0;
  engine::OutputSink sink;  // the dispatcher's

  // Decode's registration.
  bool registered = false;
  std::string decode_id;
  kv::PeerId peer = 0;
  kv::KvGeometry dst;
  uint64_t epoch = 0;
  std::vector<int32_t> dst_pages;
  int64_t reg_prompt_len = 0;
  uint64_t reg_prompt_hash = 0;

  // The engine's progress.
  std::vector<int32_t> src_pages;
  std::vector<int32_t> layer_tokens;  // per layer: tokens whose K/V is stored
  std::vector<size_t> layer_sent;     // per layer: pages written (or being written)
  bool engine_done = false;           // the final chunk came
  engine::OutputChunk final_chunk;
  std::vector<int32_t> held_pages;

  // Transfer.
  int outstanding = 0;                // writes not completed yet
  bool notice_sent = false;
  bool notice_done = false;
  uint64_t bytes = 0;
  Clock::time_point first_write{};
  Status failure;
  bool delivered = false;             // the final chunk went to the sink
  std::vector<std::function<void()>> cancel_waiters;  // run (posted to the loop) when settled
};

PrefillSide::PrefillSide(net::EventLoop& loop, PdSettings settings, PdMetrics* metrics)
    : loop_(loop), settings_(settings), metrics_(metrics), timer_(std::make_unique<net::Timer>(loop)) {}

PrefillSide::~PrefillSide() = default;

engine::KvHandoffHooks PrefillSide::hooks() {
  engine::KvHandoffHooks h;
  // The engine outlives no PrefillSide: the role shuts the engine down first.
  h.on_layer_stored = [this](const std::string& rid, std::span<const int32_t> pages, int layer, int32_t tokens) {
    on_layer(rid, pages, layer, tokens);
  };
  return h;
}

void PrefillSide::attach(engine::EngineService* engine, kv::TransferEngine* transfer, const KvLayout& layout) {
  {
    std::lock_guard lk(mu_);
    engine_ = engine;
    transfer_ = transfer;
    layout_ = layout;
    geometry_ = geometry_of(layout);
  }
  timer_->start(kSweepPeriod, kSweepPeriod, [this] { sweep(); });
}

void PrefillSide::stop() { timer_->cancel(); }

void PrefillSide::add_routes(net::HttpServer& server) {
  server.route("POST", "/pd/connect", [this](const net::Request& q, net::Response r) { route_connect(q, std::move(r)); });
  server.route("POST", "/pd/register",
               [this](const net::Request& q, net::Response r) { route_register(q, std::move(r)); });
  server.route("POST", "/pd/cancel", [this](const net::Request& q, net::Response r) { route_cancel(q, std::move(r)); });
  server.route("GET", "/pd/health", [](const net::Request&, net::Response r) {
    r.send(200, fmt::format("{{\"pid\": {}}}", static_cast<long>(::getpid())));
  });
}

// ---------------------------------------------------------------- requests (loop thread)

Status check_pd_item(const worker::ItemSpec& item, std::string_view role) {
  if (item.sample_index > 0) return Status::unsupported("n > 1 is not supported with PD disaggregation");
  const worker::Bootstrap& b = item.bootstrap;
  std::vector<std::string> missing;
  if (!b.host) missing.push_back("bootstrap_host");
  if (!b.room) missing.push_back("bootstrap_room");
  if (!missing.empty()) {
    return Status::invalid_argument(fmt::format("a {} worker needs the PD bootstrap fields (the router adds them): {} missing",
                                                role, fmt::join(missing, ", ")));
  }
  if (item.req.sampling.max_new_tokens < 1) return Status::invalid_argument("PD disaggregation needs max_new_tokens >= 1");
  return Status::ok();
}

Status PrefillSide::submit(engine::EngineService& engine, const worker::ItemSpec& item, engine::OutputSink sink,
                           bool internal) {
  if (internal) return engine.submit(item.req, std::move(sink));
  PDCTL_RETURN_IF_ERROR(check_pd_item(item, "prefill"));
  const worker::Bootstrap& b = item.bootstrap;
  const uint64_t room_id = static_cast<uint64_t>(*b.room);
  engine::GenerateRequest req = item.req;
  req.sampling.max_new_tokens = 1;  // the first token; decode generates the rest
  req.kv_handoff = engine::GenerateRequest::KvHandoff::kSend;
  {
    std::lock_guard lk(mu_);
    auto it = rooms_.find(room_id);
    if (it != rooms_.end() && it->second->has_request) {
      return Status::already_exists(fmt::format("bootstrap_room {} is in use by another request", room_id));
    }
    if (room_of_rid_.contains(req.rid)) {
      return Status::already_exists(fmt::format("a request with rid '{}' is live", req.rid));
    }
    if (it == rooms_.end()) {
      auto room = std::make_unique<Room>();
      room->id = room_id;
      it = rooms_.emplace(room_id, std::move(room)).first;
    }
    Room& room = *it->second;
    const uint64_t hash = prompt_hash(req.input_ids);
    if (room.registered && (room.reg_prompt_len != static_cast<int64_t>(req.input_ids.size()) ||
                            room.reg_prompt_hash != hash)) {
      Status st = Status::invalid_argument(fmt::format(
          "room {}: decode registered another prompt ({} tokens) than this request's ({} tokens)", room_id,
          room.reg_prompt_len, req.input_ids.size()));
      fail_locked(room, st, true);
      settle_locked(room_id);
      return st;
    }
    room.has_request = true;
    room.rid = req.rid;
    room.prompt_len = static_cast<int64_t>(req.input_ids.size());
    room.prompt_hash = hash;
    room.sink = std::move(sink);
    room.layer_tokens.assign(static_cast<size_t>(geometry_.num_layers), 0);
    room.layer_sent.assign(static_cast<size_t>(geometry_.num_layers), 0);
    room.created = std::min(room.created, Clock::now());
    room_of_rid_[req.rid] = room_id;
    publish_locked();
  }
  Status st = engine.submit(std::move(req), [self = shared_from_this(), room_id](engine::OutputChunk&& c) {
    self->on_chunk(room_id, std::move(c));
  });
  if (!st.is_ok()) {
    std::lock_guard lk(mu_);
    auto it = rooms_.find(room_id);
    if (it != rooms_.end()) {
      Room& room = *it->second;
      room_of_rid_.erase(room.rid);
      room.sink = nullptr;  // the dispatcher answers with `st` itself
      room.engine_done = true;
      room.delivered = true;
      fail_locked(room, st, false);
      settle_locked(room_id);
    }
  }
  return st;
}

// ---------------------------------------------------------------- engine thread

void PrefillSide::on_layer(const std::string& rid, std::span<const int32_t> pages, int layer, int32_t tokens) {
  std::lock_guard lk(mu_);
  auto it = room_of_rid_.find(rid);
  if (it == room_of_rid_.end()) return;
  auto rit = rooms_.find(it->second);
  if (rit == rooms_.end()) return;
  Room& room = *rit->second;
  if (room.src_pages.size() != pages.size()) room.src_pages.assign(pages.begin(), pages.end());
  if (layer < 0 || static_cast<size_t>(layer) >= room.layer_tokens.size()) return;
  room.layer_tokens[static_cast<size_t>(layer)] = tokens;
  if (settings_.layerwise) pump_locked(room);
}

void PrefillSide::on_chunk(uint64_t room_id, engine::OutputChunk&& chunk) {
  std::lock_guard lk(mu_);
  auto it = rooms_.find(room_id);
  if (it == rooms_.end()) {
    // Settled already (it failed before the engine finished): only the pages remain.
    if (!chunk.held_pages.empty() && engine_) engine_->release_pages(std::move(chunk.held_pages));
    return;
  }
  Room& room = *it->second;
  if (!chunk.finished) return;  // max_new_tokens is 1: the final chunk carries the token
  if (metrics_) metrics_->prompt_computed(std::chrono::duration<double>(Clock::now().time_since_epoch()).count());
  room.engine_done = true;
  room.held_pages = std::move(chunk.held_pages);
  room_of_rid_.erase(room.rid);
  if (chunk.finish.type == engine::FinishInfo::Type::kAbort) {
    room.final_chunk = std::move(chunk);
    const engine::FinishInfo& f = room.final_chunk.finish;
    fail_locked(room, Status(f.abort_code == Errc::kOk ? Errc::kCancelled : f.abort_code, f.message), false);
  } else if (chunk.token_ids.empty()) {
    room.final_chunk = std::move(chunk);
    fail_locked(room, Status::internal("prefill produced no first token"), false);
  } else {
    room.final_chunk = std::move(chunk);
    pump_locked(room);
  }
  settle_locked(room_id);
}

// ---------------------------------------------------------------- transfer (under mu_)

void PrefillSide::pump_locked(Room& room) {
  if (!room.registered || !room.has_request || room.state == Room::State::kFailed || room.notice_sent) return;
  if (room.state == Room::State::kBootstrapping) room.state = Room::State::kWaitingForInput;
  const int ps = geometry_.page_size;
  const size_t total_pages = static_cast<size_t>((room.prompt_len + ps - 1) / ps);
  if (room.src_pages.size() < total_pages && room.engine_done) {
    fail_locked(room, Status::internal("the engine's page table is shorter than the prompt"), false);
    return;
  }
  kv::WriteRequest w;
  w.peer = room.peer;
  if (settings_.layerwise || room.engine_done) {
    for (size_t l = 0; l < room.layer_tokens.size(); ++l) {
      const int64_t t = room.layer_tokens[l];
      // Whole pages only, until the prompt is complete: a page is written once, after its
      // bytes stopped changing (the transfer reads them asynchronously).
      const size_t ready = t >= room.prompt_len ? total_pages : static_cast<size_t>(t / ps);
      if (ready > room.layer_sent[l] && ready <= room.src_pages.size()) {
        append_layer_copies(geometry_, room.dst, static_cast<int>(l), room.src_pages, room.dst_pages,
                            room.layer_sent[l], ready, w.copies);
        room.layer_sent[l] = ready;
      }
    }
  }
  auto submit = [&](kv::WriteRequest req, bool notice) {
    const uint64_t id = room.id;
    uint64_t bytes = 0;
    for (const kv::Copy& c : req.copies) bytes += c.length;
    if (room.outstanding == 0 && room.bytes == 0) room.first_write = Clock::now();
    Status st = transfer_->write(std::move(req), [self = shared_from_this(), id, notice](const kv::TransferResult& r) {
      self->on_write_done(id, notice, r);
    });
    if (!st.is_ok()) {
      fail_locked(room, st.with_context("writing the KV"), false);
      return false;
    }
    room.bytes += bytes;
    ++room.outstanding;
    room.state = Room::State::kTransferring;
    return true;
  };
  if (!w.copies.empty() && !submit(std::move(w), false)) return;
  if (!room.engine_done || room.state == Room::State::kFailed) return;
  for (size_t l = 0; l < room.layer_sent.size(); ++l) {
    if (room.layer_sent[l] < total_pages) return;  // a layer has not been stored whole (cannot happen once done)
  }
  // Every put of the room is issued: the flush of this empty write covers them all, and the
  // notice follows the flush.
  Notice n;
  n.room = room.id;
  n.epoch = room.epoch;
  n.ok = true;
  n.token = room.final_chunk.token_ids.front();
  n.logprob = room.final_chunk.logprobs.empty() ? 0.0f : room.final_chunk.logprobs.front().logprob;
  kv::WriteRequest last;
  last.peer = room.peer;
  last.notice = encode_notice(n);
  if (submit(std::move(last), true)) room.notice_sent = true;
}

void PrefillSide::fail_locked(Room& room, Status why, bool bootstrap) {
  if (room.state == Room::State::kFailed || room.state == Room::State::kSuccess) return;
  spdlog::warn("PD room {} ({}) failed: {}", room.id, room.rid.empty() ? "no request yet" : room.rid, why.message());
  room.state = Room::State::kFailed;
  room.failure = std::move(why);
  if (metrics_) (bootstrap ? metrics_->bootstrap_failed() : metrics_->transfer_failed());
  // The engine stops computing it; its final chunk brings the pages.
  if (room.has_request && !room.engine_done && engine_) engine_->abort(room.rid, room.failure.message());
}

void PrefillSide::on_write_done(uint64_t room_id, bool notice, const kv::TransferResult& r) {
  std::lock_guard lk(mu_);
  auto it = rooms_.find(room_id);
  if (it == rooms_.end()) return;
  Room& room = *it->second;
  --room.outstanding;
  if (!r.status.is_ok()) {
    fail_locked(room, r.status.with_context("KV transfer to decode"), false);
  } else if (notice) {
    room.notice_done = true;
    if (room.state != Room::State::kFailed) {
      room.state = Room::State::kSuccess;
      const double secs = std::chrono::duration<double>(Clock::now() - room.first_write).count();
      if (metrics_) metrics_->transferred(room.bytes, secs);
    }
  }
  settle_locked(room_id);
}

void PrefillSide::settle_locked(uint64_t room_id) {
  auto it = rooms_.find(room_id);
  if (it == rooms_.end()) return;
  Room& room = *it->second;
  const bool failed = room.state == Room::State::kFailed;
  if (!failed && room.state != Room::State::kSuccess) return;
  if (room.outstanding > 0) return;             // a write may still read the pages
  if (room.has_request && !room.engine_done) return;  // the final chunk brings the pages
  if (!room.held_pages.empty() && engine_) engine_->release_pages(std::move(room.held_pages));
  if (failed && room.registered && !room.notice_done && transfer_ != nullptr) {
    // Tell decode, so that it frees its pages now rather than at its timeout. Nothing of
    // this room is in flight any more, so no write can land after this notice.
    Notice n;
    n.room = room.id;
    n.epoch = room.epoch;
    n.ok = false;
    n.error = room.failure.message();
    (void)transfer_->send(room.peer, encode_notice(n), [](const kv::TransferResult&) {});
  }
  if (!room.delivered && room.sink) {
    engine::OutputChunk c = std::move(room.final_chunk);
    c.held_pages.clear();
    if (failed) {
      c.token_ids.clear();
      c.text.clear();
      c.logprobs.clear();
      c.finished = true;
      c.finish.type = engine::FinishInfo::Type::kAbort;
      c.finish.abort_code = room.failure.code() == Errc::kCancelled ? Errc::kCancelled : room.failure.code();
      c.finish.message = room.failure.message();
    }
    room.delivered = true;
    room.sink(std::move(c));
  }
  for (auto& w : room.cancel_waiters) loop_.post(std::move(w));
  if (!room.rid.empty()) {
    auto r = room_of_rid_.find(room.rid);
    if (r != room_of_rid_.end() && r->second == room_id) room_of_rid_.erase(r);
  }
  rooms_.erase(it);
  publish_locked();
}

void PrefillSide::publish_locked() {
  if (!metrics_) return;
  int boot = 0, transfer = 0;
  for (const auto& [_, r] : rooms_) {
    if (r->state == Room::State::kBootstrapping) ++boot;
    if (r->state == Room::State::kTransferring || r->state == Room::State::kWaitingForInput) ++transfer;
  }
  metrics_->set_queues(boot, transfer);
}

// ---------------------------------------------------------------- peers (transfer thread)

void PrefillSide::on_peer_event(const kv::PeerEvent& ev) {
  if (ev.state == kv::PeerState::kReady) {
    spdlog::info("decode peer {} ready over {}", ev.peer, ev.transports);
    {
      std::lock_guard lk(mu_);
      for (auto& [_, d] : decodes_) {
        if (d.peer == ev.peer) d.ready = true;
      }
    }
    loop_.post([self = shared_from_this(), peer = ev.peer] { self->answer_connects(peer, Status::ok()); });
    return;
  }
  if (ev.state != kv::PeerState::kFailed) return;
  loop_.post([self = shared_from_this(), peer = ev.peer, st = ev.status] {
    self->answer_connects(peer, Status::unavailable("UCX could not connect to decode: " + st.message()));
  });
  spdlog::warn("decode peer {} failed: {}", ev.peer, ev.status.message());
  std::lock_guard lk(mu_);
  for (auto it = decodes_.begin(); it != decodes_.end();) {
    it = it->second.peer == ev.peer ? decodes_.erase(it) : std::next(it);
  }
  std::vector<uint64_t> ids;
  for (auto& [id, r] : rooms_) {
    if (r->registered && r->peer == ev.peer) {
      r->notice_done = true;  // nobody to tell
      fail_locked(*r, Status::unavailable("the decode worker failed: " + ev.status.message()), false);
      ids.push_back(id);
    }
  }
  for (uint64_t id : ids) settle_locked(id);
  // Removing it lets a restarted decode connect afresh; not from inside the callback.
  loop_.post([self = shared_from_this(), peer = ev.peer] {
    if (self->transfer_) (void)self->transfer_->remove_peer(peer);
  });
}

// ---------------------------------------------------------------- bootstrap routes (loop thread)

void PrefillSide::route_connect(const net::Request& req, net::Response resp) {
  auto c = decode_connect(req.body);
  if (!c) return reply_error(resp, c.status());
  std::lock_guard lk(mu_);
  if (!transfer_) return reply_error(resp, Status::unavailable("the prefill worker is still loading"));
  if (Status st = check_layout(layout_, c->layout); !st.is_ok()) {
    spdlog::error("decode {} refused: {}", c->decode_id, st.message());
    return reply_error(resp, st);
  }
  auto it = decodes_.find(c->decode_id);
  if (it == decodes_.end()) {
    auto peer = transfer_->add_peer(c->descriptor);
    if (!peer) return reply_error(resp, peer.status().with_context("connecting to decode"));
    it = decodes_.emplace(c->decode_id, Decode{*peer, geometry_of(c->layout), false}).first;
    spdlog::info("decode {} connecting (peer {})", c->decode_id, *peer);
  }
  if (it->second.ready) return answer_connect(resp, layout_);
  connect_waiters_[it->second.peer].push_back(std::move(resp));
}

void PrefillSide::answer_connects(kv::PeerId peer, const Status& st) {
  auto it = connect_waiters_.find(peer);
  if (it == connect_waiters_.end()) return;
  std::vector<net::Response> waiting = std::move(it->second);
  connect_waiters_.erase(it);
  KvLayout layout;
  {
    std::lock_guard lk(mu_);
    layout = layout_;
  }
  for (net::Response& r : waiting) {
    if (st.is_ok()) {
      answer_connect(r, layout);
    } else {
      reply_error(r, st);
    }
  }
}

void PrefillSide::route_register(const net::Request& req, net::Response resp) {
  auto r = decode_register(req.body);
  if (!r) return reply_error(resp, r.status());
  std::lock_guard lk(mu_);
  auto d = decodes_.find(r->decode_id);
  if (d == decodes_.end()) {
    return reply_error(resp, Status::not_found(fmt::format("decode '{}' is not connected", r->decode_id)));
  }
  const int64_t need = (r->prompt_len + geometry_.page_size - 1) / geometry_.page_size;
  if (static_cast<int64_t>(r->pages.size()) != need) {
    return reply_error(resp, Status::invalid_argument(
                                 fmt::format("room {}: {} pages for {} tokens", r->room, r->pages.size(), r->prompt_len)));
  }
  for (int32_t p : r->pages) {
    if (p >= d->second.geometry.num_pages) {
      return reply_error(resp, Status::invalid_argument(fmt::format("room {}: page {} is outside decode's pool", r->room, p)));
    }
  }
  auto it = rooms_.find(r->room);
  if (it != rooms_.end() && it->second->registered) {
    resp.send(409, worker::error_body(worker::ApiError{409, fmt::format("room {} is registered already", r->room), "", ""}));
    return;
  }
  if (it == rooms_.end()) {
    auto room = std::make_unique<Room>();
    room->id = r->room;
    it = rooms_.emplace(r->room, std::move(room)).first;
  }
  Room& room = *it->second;
  if (room.has_request && (room.prompt_len != r->prompt_len || room.prompt_hash != r->prompt_hash)) {
    Status st = Status::invalid_argument(fmt::format("room {}: decode has another prompt ({} tokens) than prefill ({} tokens)",
                                                     r->room, r->prompt_len, room.prompt_len));
    fail_locked(room, st, true);
    settle_locked(r->room);
    return reply_error(resp, st);
  }
  if (room.state == Room::State::kFailed) {
    return reply_error(resp, Status::unavailable(fmt::format("room {} failed: {}", r->room, room.failure.message())));
  }
  room.registered = true;
  room.decode_id = r->decode_id;
  room.peer = d->second.peer;
  room.dst = d->second.geometry;
  room.epoch = r->epoch;
  room.dst_pages = std::move(r->pages);
  room.reg_prompt_len = r->prompt_len;
  room.reg_prompt_hash = r->prompt_hash;
  pump_locked(room);
  settle_locked(r->room);
  publish_locked();
  resp.send(200, "{}");
}

void PrefillSide::route_cancel(const net::Request& req, net::Response resp) {
  auto c = decode_cancel(req.body);
  if (!c) return reply_error(resp, c.status());
  std::lock_guard lk(mu_);
  auto it = rooms_.find(c->room);
  if (it == rooms_.end() || (it->second->registered && it->second->epoch != c->epoch) ||
      (it->second->registered && it->second->decode_id != c->decode_id)) {
    return resp.send(200, "{}");  // nothing of it is in flight
  }
  Room& room = *it->second;
  room.notice_done = true;  // decode gave up on it: no failure notice needed
  room.cancel_waiters.push_back([resp]() mutable { resp.send(200, "{}"); });
  // Prefill's client (the router) gets an error, not an empty success.
  fail_locked(room, Status::unavailable("decode cancelled the room (its client went away or it timed out)"), false);
  settle_locked(c->room);
}

void PrefillSide::sweep() {
  std::lock_guard lk(mu_);
  const auto now = Clock::now();
  std::vector<uint64_t> ids;
  for (auto& [id, r] : rooms_) {
    if ((r->registered && r->has_request) || r->state == Room::State::kFailed) continue;
    if (now - r->created > settings_.bootstrap_timeout) {
      const double secs = std::chrono::duration<double>(settings_.bootstrap_timeout).count();
      std::string msg = r->registered ? fmt::format("no prefill request for room {} came within {} s", id, secs)
                                      : fmt::format("no decode worker registered room {} within {} s", id, secs);
      fail_locked(*r, Status::timeout(std::move(msg)), true);
      ids.push_back(id);
    }
  }
  for (uint64_t id : ids) settle_locked(id);
}

}  // namespace pdctl::pd

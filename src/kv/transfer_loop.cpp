// The transfer thread: a libuv loop that sleeps on the UCX worker's event fd, drains the
// command queue, posts UCX operations and reports their completions.
//
// Rule of this file: UCX callbacks (request completions, endpoint errors, active messages)
// only record what happened; the loop acts on the records after ucp_worker_progress has
// returned. So no UCX call and no user callback ever runs inside UCX's progress.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <utility>

#include <spdlog/spdlog.h>

#include "kv/transfer_engine_impl.h"
#include "kv/ucx_endpoint.h"
#include "kv/ucx_status.h"
#include "kv/uv_loop.h"

namespace pdctl::kv {

namespace {

constexpr unsigned kAmId = 1;          // the one active-message id of the engine
constexpr int kProgressBurst = 64;     // ucp_worker_progress calls before looking elsewhere
constexpr int kPumpRounds = 16;        // rounds before yielding to the other uv handles

struct Op {
  enum class Kind { kConnect, kWrite, kSend };
  TransferLoop::State* loop = nullptr;  // for UCX callbacks, which get only the op
  enum class Phase { kStarting, kFlushing, kSending, kDone };
  Kind kind = Kind::kWrite;
  Phase phase = Phase::kStarting;
  uint64_t id = 0;
  PeerId peer = 0;
  std::vector<Copy> puts;
  uint32_t local_region = 0;
  uint32_t remote_region = 0;
  uint64_t bytes = 0;
  std::string message;  // kSend: the message; kWrite: the notice; kept until its send completes
  Completion done;
  Clock::time_point submitted;
  Clock::time_point deadline;
  int outstanding = 0;              // UCX requests whose callback is still due
  ucs_status_t ucx_error = UCS_OK;  // first error a request reported
  bool finished = false;            // the caller's completion ran (connect: peer resolved)
};

struct Peer {
  PeerId id = 0;
  std::shared_ptr<const EngineDescriptor> descriptor;
  UcxEndpoint ep;
  std::vector<UcxRemoteKey> rkeys;  // one per peer region; destroyed before `ep` is closed
  Status failure;                   // set once the peer failed; later operations get it
  int active_ops = 0;               // unfinished writes and sends
  bool removing = false;
};

// A message that arrives by rendezvous: its data is fetched into `data`.
struct RecvOp {
  TransferLoop::State* loop = nullptr;
  std::string data;
  ucs_status_t status = UCS_OK;
};

struct Closing {
  UcxEndpoint ep;
  Clock::time_point deadline;
};

}  // namespace

struct TransferLoop::State {
  explicit State(TransferEngine::Impl& e, UcxWorker w) : engine(e), opts(e.options), worker(std::move(w)) {}

  TransferEngine::Impl& engine;
  const TransferOptions& opts;

  // Records made by UCX callbacks, acted on by handle_events(). Declared (and destroyed)
  // together with the ops they name; see ~TransferLoop for the teardown order.
  std::vector<uint64_t> dirty_ops;
  std::vector<std::pair<PeerId, Status>> failed_peers;
  std::vector<std::string> received;
  std::vector<std::pair<void*, size_t>> rndv_descs;
  std::vector<RecvOp*> recvs_done;

  std::unordered_map<uint64_t, std::unique_ptr<Op>> ops;
  std::unordered_map<RecvOp*, std::unique_ptr<RecvOp>> recvs;
  uint64_t next_op = 1;

  UcxWorker worker;
  std::unordered_map<PeerId, std::unique_ptr<Peer>> peers;
  std::vector<Closing> closing;

  // uv handles, before the loop that closes them (see uv_loop.h).
  uv_async_t async{};
  uv_poll_t poll{};
  uv_timer_t tick{};
  uv_timer_t deadline_timer{};
  uv_idle_t idle{};
  UvLoop loop;

  bool stopping = false;
  bool ops_drained = false;  // shutdown: operations finished or cancelled, endpoints closing
  bool handles_closed = false;
  Clock::time_point stop_deadline;
  Clock::time_point close_deadline;

  // ---- the loop
  void pump();
  bool drain_commands();
  bool handle_events();
  void poll_closing();
  void on_tick();
  void maybe_finish_shutdown();
  void arm_deadline(Clock::time_point when);

  // ---- commands
  void connect(Command& cmd);
  void start(Command& cmd);
  void remove_peer(PeerId id);

  // ---- operations
  Op& new_op(Op::Kind kind, PeerId peer);
  void start_write(Op& op, Peer& peer);
  void start_send(Op& op, Peer& peer);
  void start_flush(Op& op, Peer& peer);
  void advance(Op& op);
  void finish(Op& op, Status st);
  void forget_if_done(Op& op);

  // ---- peers
  Peer* find_peer(PeerId id);
  void peer_ready(Peer& peer);
  void fail_peer(Peer& peer, Status why);
  void close_peer_endpoint(Peer& peer, bool force);
  void emit(PeerId id, PeerState state, Status st = {}, std::string transports = {});

  // ---- UCX callbacks (record only)
  static void request_done(void* request, ucs_status_t status, void* user_data);
  static void recv_done(void* request, ucs_status_t status, size_t length, void* user_data);
  static ucs_status_t am_received(void* arg, const void* header, size_t header_length, void* data,
                                  size_t length, const ucp_am_recv_param_t* param);
};

namespace {

}  // namespace

// ================================================================ setup and teardown

TransferLoop::TransferLoop(TransferEngine::Impl& engine, UcxWorker worker)
    : s_(std::make_unique<State>(engine, std::move(worker))) {}

TransferLoop::~TransferLoop() {
  // The thread has been joined (or never started). Order matters:
  // 1. uv handles, while the state they point at exists;
  s_->loop.reset();
  // 2. endpoints (and their remote keys), closed with force if still open;
  s_->peers.clear();
  s_->closing.clear();
  for (auto& [desc, len] : s_->rndv_descs) ucp_am_data_release(s_->worker.get(), desc);
  s_->rndv_descs.clear();
  // 3. the worker: destroying it may still run request callbacks, which record into the
  //    ops and vectors that are destroyed only after it (with s_).
  s_->worker = UcxWorker();
}

Status TransferLoop::init() {
  State& s = *s_;
  PDCTL_RETURN_IF_ERROR(s.loop.init());
  uv_loop_t* loop = s.loop.get();
  s.async.data = &s;
  s.poll.data = &s;
  s.tick.data = &s;
  s.deadline_timer.data = &s;
  s.idle.data = &s;
  if (int rc = uv_async_init(loop, &s.async, [](uv_async_t* h) { static_cast<State*>(h->data)->pump(); }); rc) {
    return Status::io(std::string("uv_async_init: ") + uv_strerror(rc));
  }
  PDCTL_ASSIGN_OR_RETURN(int efd, s.worker.event_fd());
  if (int rc = uv_poll_init(loop, &s.poll, efd); rc) return Status::io(std::string("uv_poll_init: ") + uv_strerror(rc));
  uv_poll_start(&s.poll, UV_READABLE, [](uv_poll_t* h, int status, int) {
    auto* st = static_cast<State*>(h->data);
    if (status < 0) spdlog::warn("[{}] UCX event fd: {}", st->opts.name, uv_strerror(status));
    st->pump();
  });
  uv_timer_init(loop, &s.tick);
  uv_timer_init(loop, &s.deadline_timer);
  uv_idle_init(loop, &s.idle);
  // Periodic wake-up, once per keepalive interval (not a busy poll): lets UCX run its
  // keepalive (tcp, RDMA), checks that same-host peers still run, and enforces operation
  // deadlines.
  const uint64_t period = uint64_t(s.opts.keepalive_interval.count());
  uv_timer_start(&s.tick, [](uv_timer_t* h) { static_cast<State*>(h->data)->on_tick(); }, period, period);

  ucp_am_handler_param_t am{};
  am.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG |
                  UCP_AM_HANDLER_PARAM_FIELD_FLAGS;
  am.id = kAmId;
  am.cb = &State::am_received;
  am.arg = &s;
  am.flags = UCP_AM_FLAG_WHOLE_MSG;  // one callback per message, however it was fragmented
  PDCTL_RETURN_IF_ERROR(ucx_status(ucp_worker_set_am_recv_handler(s.worker.get(), &am), "ucp_worker_set_am_recv_handler"));
  return Status::ok();
}

void TransferLoop::run() {
  State& s = *s_;
  s.pump();  // events that arrived before the poll was armed
  uv_run(s.loop.get(), UV_RUN_DEFAULT);
  // uv_run returns once every handle is closed, which happens only at the end of shutdown.
}

void TransferLoop::wake() { uv_async_send(&s_->async); }

// ================================================================ the loop

void TransferLoop::State::pump() {
  if (handles_closed) return;
  for (int round = 0; round < kPumpRounds; ++round) {
    bool busy = drain_commands();
    for (int i = 0; i < kProgressBurst; ++i) {
      if (ucp_worker_progress(worker.get()) == 0) break;
      busy = true;
    }
    busy |= handle_events();
    poll_closing();
    if (stopping) {
      maybe_finish_shutdown();
      if (handles_closed) return;
    }
    if (busy) continue;
    // Nothing left: arm the event fd and sleep in uv. UCS_ERR_BUSY means events arrived
    // meanwhile, so progress again.
    ucs_status_t st = ucp_worker_arm(worker.get());
    if (st == UCS_OK) {
      uv_idle_stop(&idle);
      return;
    }
    if (st != UCS_ERR_BUSY) {
      // Without a working event fd only the periodic tick drives the worker: slow, but no
      // busy loop.
      spdlog::error("[{}] {}", opts.name, ucx_status(st, "ucp_worker_arm").to_string());
      uv_idle_stop(&idle);
      return;
    }
  }
  // Still busy after many rounds: come back on the next loop iteration so that timers and
  // the command queue are not starved by one long transfer.
  uv_idle_start(&idle, [](uv_idle_t* h) { static_cast<State*>(h->data)->pump(); });
}

bool TransferLoop::State::drain_commands() {
  std::deque<Command> batch;
  {
    std::lock_guard lock(engine.mu);
    batch.swap(engine.queue);
  }
  for (Command& cmd : batch) {
    switch (cmd.kind) {
      case Command::Kind::kConnect: connect(cmd); break;
      case Command::Kind::kRemovePeer: remove_peer(cmd.peer); break;
      case Command::Kind::kWrite:
      case Command::Kind::kSend: start(cmd); break;
      case Command::Kind::kStop:
        if (!stopping) {
          stopping = true;
          stop_deadline = Clock::now() + opts.shutdown_timeout;
          arm_deadline(stop_deadline);
        }
        break;
    }
  }
  return !batch.empty();
}

bool TransferLoop::State::handle_events() {
  bool any = false;
  // Swap out each list first: acting on a record may post operations whose callbacks run
  // (and record) at once, e.g. when an endpoint is closed with force.
  while (!failed_peers.empty() || !dirty_ops.empty() || !received.empty() || !rndv_descs.empty() ||
         !recvs_done.empty()) {
    any = true;
    for (auto& [id, why] : std::exchange(failed_peers, {})) {
      if (Peer* p = find_peer(id)) fail_peer(*p, why);
    }
    for (uint64_t id : std::exchange(dirty_ops, {})) {
      if (auto it = ops.find(id); it != ops.end()) advance(*it->second);
    }
    for (auto& [desc, length] : std::exchange(rndv_descs, {})) {
      auto recv = std::make_unique<RecvOp>();
      recv->loop = this;
      recv->data.resize(length);
      ucp_request_param_t param{};
      param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
      param.cb.recv_am = &State::recv_done;
      param.user_data = recv.get();
      void* req = ucp_am_recv_data_nbx(worker.get(), desc, recv->data.data(), length, &param);
      if (UCS_PTR_IS_PTR(req)) {
        recvs.emplace(recv.get(), std::move(recv));
      } else if (ucs_status_t st = UCS_PTR_STATUS(req); st == UCS_OK) {
        received.push_back(std::move(recv->data));
      } else {
        engine.counters.messages_dropped.fetch_add(1, std::memory_order_relaxed);
        spdlog::warn("[{}] {}", opts.name, ucx_status(st, "receiving a message").to_string());
      }
    }
    for (RecvOp* r : std::exchange(recvs_done, {})) {
      auto it = recvs.find(r);
      if (it == recvs.end()) continue;
      if (r->status == UCS_OK) {
        received.push_back(std::move(r->data));
      } else {
        engine.counters.messages_dropped.fetch_add(1, std::memory_order_relaxed);
        spdlog::warn("[{}] {}", opts.name, ucx_status(r->status, "receiving a message").to_string());
      }
      recvs.erase(it);
    }
    for (std::string& m : std::exchange(received, {})) {
      engine.counters.messages_received.fetch_add(1, std::memory_order_relaxed);
      if (opts.on_message) {
        opts.on_message(std::move(m));
      } else {
        engine.counters.messages_dropped.fetch_add(1, std::memory_order_relaxed);
      }
    }
  }
  return any;
}

void TransferLoop::State::poll_closing() {
  const auto now = Clock::now();
  std::erase_if(closing, [&](Closing& c) {
    if (!c.ep.close_pending()) return true;
    if (now < c.deadline) return false;
    spdlog::warn("[{}] an endpoint did not finish closing in time; released", opts.name);
    c.ep.abandon_close();
    return true;
  });
}

void TransferLoop::State::on_tick() {
  const auto now = Clock::now();
  std::vector<std::pair<PeerId, Status>> late;
  for (auto& [id, op] : ops) {
    if (op->finished || now < op->deadline) continue;
    const char* what = op->kind == Op::Kind::kConnect ? "wire-up" : op->kind == Op::Kind::kWrite ? "a write" : "a send";
    late.emplace_back(op->peer, Status::timeout(std::string(what) + " did not complete within " +
                                                std::to_string(opts.operation_timeout.count()) + " ms"));
  }
  // A late operation fails its whole peer: its puts could otherwise still land later.
  for (auto& [id, why] : late) {
    if (Peer* p = find_peer(id)) fail_peer(*p, why);
  }
  // UCX notices dead peers only with peer-failure mode and transports that support it (not
  // posix/sysv shared memory in 1.13); a peer on this host can be checked directly.
  std::vector<PeerId> gone;
  for (auto& [id, peer] : peers) {
    if (peer->failure.is_ok() && check_liveness(peer->descriptor->process, engine.self) == Liveness::kGone) {
      gone.push_back(id);
    }
  }
  for (PeerId id : gone) {
    if (Peer* p = find_peer(id)) {
      fail_peer(*p, Status::unavailable("its process (pid " + std::to_string(p->descriptor->process.pid) +
                                        " on this host) has exited"));
    }
  }
  pump();
}

void TransferLoop::State::arm_deadline(Clock::time_point when) {
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(when - Clock::now()).count();
  uv_timer_start(&deadline_timer, [](uv_timer_t* h) { static_cast<State*>(h->data)->pump(); },
                 uint64_t(std::max<int64_t>(ms, 0)), 0);
}

void TransferLoop::State::maybe_finish_shutdown() {
  const auto now = Clock::now();
  if (!ops_drained) {
    bool pending = std::any_of(ops.begin(), ops.end(), [](const auto& kv) {
      return !kv.second->finished && kv.second->kind != Op::Kind::kConnect;
    });
    if (pending && now < stop_deadline) return;
    // Whatever is still running gets cancelled: force-close the endpoints it uses first, so
    // that nothing can land after its completion reports the failure.
    for (auto& [id, peer] : peers) {
      const bool force = peer->active_ops > 0 || !peer->failure.is_ok();
      close_peer_endpoint(*peer, force);
    }
    std::vector<Op*> victims;
    for (auto& [id, op] : ops) {
      if (!op->finished && op->kind != Op::Kind::kConnect) victims.push_back(op.get());
    }
    for (Op* op : victims) finish(*op, Status::cancelled("the transfer engine shut down before the operation completed"));
    for (auto& [id, peer] : peers) emit(id, PeerState::kClosed);
    peers.clear();
    ops_drained = true;
    close_deadline = now + opts.shutdown_timeout;
    arm_deadline(close_deadline);
    poll_closing();
  }
  if (!closing.empty() && now < close_deadline) return;
  for (Closing& c : closing) c.ep.abandon_close();
  closing.clear();
  handles_closed = true;
  loop.close_all_handles();  // uv_run returns once their close callbacks ran
}

// ================================================================ commands

Peer* TransferLoop::State::find_peer(PeerId id) {
  auto it = peers.find(id);
  return it == peers.end() ? nullptr : it->second.get();
}

void TransferLoop::State::emit(PeerId id, PeerState state, Status st, std::string transports) {
  if (state == PeerState::kReady) engine.set_peer_transports(id, transports);
  if (!opts.on_peer_event) return;
  PeerEvent ev;
  ev.peer = id;
  ev.state = state;
  ev.status = std::move(st);
  ev.transports = std::move(transports);
  opts.on_peer_event(ev);
}

void TransferLoop::State::connect(Command& cmd) {
  if (stopping) return;
  auto owned = std::make_unique<Peer>();
  Peer& peer = *owned;
  peer.id = cmd.peer;
  peer.descriptor = cmd.descriptor;
  peers.emplace(peer.id, std::move(owned));
  emit(peer.id, PeerState::kConnecting);

  const PeerId id = peer.id;
  auto ep = UcxEndpoint::connect(worker.get(), peer.descriptor->worker_address, opts.peer_failure_detection,
                                 [this, id](const Status& why) { failed_peers.emplace_back(id, why); });
  if (!ep) {
    fail_peer(peer, std::move(ep).status());
    return;
  }
  peer.ep = std::move(*ep);
  for (size_t i = 0; i < peer.descriptor->regions.size(); ++i) {
    auto rkey = UcxRemoteKey::unpack(peer.ep.get(), peer.descriptor->regions[i].rkey);
    if (!rkey) {
      fail_peer(peer, std::move(rkey).status().with_context("the peer's region " + std::to_string(i)));
      return;
    }
    peer.rkeys.push_back(std::move(*rkey));
  }
  // A flush completes once wire-up has: that is when the peer is ready.
  Op& op = new_op(Op::Kind::kConnect, id);
  start_flush(op, peer);
}

void TransferLoop::State::remove_peer(PeerId id) {
  Peer* peer = find_peer(id);
  if (!peer) return;
  peer->removing = true;
  if (peer->active_ops > 0) return;  // finish() closes it after the last one
  close_peer_endpoint(*peer, /*force=*/!peer->failure.is_ok());
  peers.erase(id);
  emit(id, PeerState::kClosed);
}

void TransferLoop::State::start(Command& cmd) {
  Op& op = new_op(cmd.kind == Command::Kind::kWrite ? Op::Kind::kWrite : Op::Kind::kSend, cmd.peer);
  op.puts = std::move(cmd.puts);
  op.local_region = cmd.local_region;
  op.remote_region = cmd.remote_region;
  op.bytes = cmd.kind == Command::Kind::kWrite ? cmd.bytes : cmd.message.size();
  op.message = std::move(cmd.message);
  op.done = std::move(cmd.done);
  op.submitted = cmd.submitted;
  op.deadline = cmd.submitted + opts.operation_timeout;

  Peer* peer = find_peer(op.peer);
  if (peer) ++peer->active_ops;  // finish() takes it back
  if (stopping) {
    finish(op, Status::cancelled("the transfer engine is shutting down"));
    return;
  }
  if (!peer || peer->removing) {
    finish(op, Status::not_found("peer " + std::to_string(op.peer) + " was removed"));
    return;
  }
  if (!peer->failure.is_ok()) {  // fail fast: the peer is gone
    finish(op, peer->failure);
    return;
  }
  if (op.kind == Op::Kind::kWrite) {
    start_write(op, *peer);
  } else {
    start_send(op, *peer);
  }
}

// ================================================================ operations

Op& TransferLoop::State::new_op(Op::Kind kind, PeerId peer) {
  auto op = std::make_unique<Op>();
  op->loop = this;
  op->kind = kind;
  op->id = next_op++;
  op->peer = peer;
  op->submitted = Clock::now();
  op->deadline = op->submitted + opts.operation_timeout;
  Op& ref = *op;
  ops.emplace(ref.id, std::move(op));
  return ref;
}

void TransferLoop::State::start_write(Op& op, Peer& peer) {
  std::byte* local = engine.regions[op.local_region].data;
  const uint64_t remote = peer.descriptor->regions[op.remote_region].base;
  ucp_rkey_h rkey = peer.rkeys[op.remote_region].get();
  ucp_request_param_t param{};
  // The local region is registered: passing its handle spares UCX a registration lookup
  // and lets zero-copy transports use it as is.
  param.op_attr_mask = UCP_OP_ATTR_FIELD_MEMH;
  param.memh = engine.memory[op.local_region].get();
  for (const Copy& p : op.puts) {
    void* req = ucp_put_nbx(peer.ep.get(), local + p.local_offset, p.length, remote + p.remote_offset, rkey, &param);
    engine.counters.puts.fetch_add(1, std::memory_order_relaxed);
    if (UCS_PTR_IS_PTR(req)) {
      // No callback: the flush below covers its completion (UCX keeps progressing a freed
      // request; it only stops notifying about it).
      ucp_request_free(req);
    } else if (ucs_status_t st = UCS_PTR_STATUS(req); st != UCS_OK) {
      op.ucx_error = st;
      break;  // the flush still runs, so that nothing issued can land after completion
    }
  }
  start_flush(op, peer);
}

void TransferLoop::State::start_flush(Op& op, Peer& peer) {
  op.phase = Op::Phase::kFlushing;
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  param.cb.send = &State::request_done;
  param.user_data = &op;
  void* req = ucp_ep_flush_nbx(peer.ep.get(), &param);
  if (UCS_PTR_IS_PTR(req)) {
    ++op.outstanding;
  } else if (ucs_status_t st = UCS_PTR_STATUS(req); st != UCS_OK && op.ucx_error == UCS_OK) {
    op.ucx_error = st;
  }
  if (op.outstanding == 0) dirty_ops.push_back(op.id);
}

void TransferLoop::State::start_send(Op& op, Peer& peer) {
  op.phase = Op::Phase::kSending;
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  param.cb.send = &State::request_done;
  param.user_data = &op;
  void* req = ucp_am_send_nbx(peer.ep.get(), kAmId, nullptr, 0, op.message.data(), op.message.size(), &param);
  if (UCS_PTR_IS_PTR(req)) {
    ++op.outstanding;
  } else if (ucs_status_t st = UCS_PTR_STATUS(req); st != UCS_OK && op.ucx_error == UCS_OK) {
    op.ucx_error = st;
  }
  if (op.outstanding == 0) dirty_ops.push_back(op.id);
}

void TransferLoop::State::advance(Op& op) {
  if (op.finished) {
    forget_if_done(op);
    return;
  }
  if (op.outstanding > 0) return;
  Peer* peer = find_peer(op.peer);
  if (op.kind == Op::Kind::kConnect) {
    op.finished = true;
    if (peer && peer->failure.is_ok()) {
      if (op.ucx_error == UCS_OK) {
        peer_ready(*peer);
      } else {
        fail_peer(*peer, ucx_status(op.ucx_error, "wire-up with the peer"));
      }
    }
    forget_if_done(op);
    return;
  }
  if (op.ucx_error != UCS_OK) {
    Status st = ucx_status(op.ucx_error, op.phase == Op::Phase::kFlushing ? "write" : "send");
    finish(op, peer && !peer->failure.is_ok() ? peer->failure : std::move(st));
    return;
  }
  if (op.phase == Op::Phase::kFlushing && !op.message.empty() && peer && peer->failure.is_ok()) {
    start_send(op, *peer);  // the notice, only now that every put is visible at the peer
    return;
  }
  finish(op, Status::ok());
}

void TransferLoop::State::finish(Op& op, Status st) {
  if (op.finished) return;
  op.finished = true;
  op.phase = Op::Phase::kDone;
  TransferResult r;
  r.latency = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - op.submitted);
  r.bytes = st.is_ok() ? op.bytes : 0;
  r.puts = uint32_t(op.puts.size());
  r.status = std::move(st);
  auto& c = engine.counters;
  constexpr auto rel = std::memory_order_relaxed;
  if (op.kind == Op::Kind::kWrite) {
    c.record_write_latency(r.latency);
    if (r.status.is_ok()) {
      c.writes_completed.fetch_add(1, rel);
      c.bytes_written.fetch_add(op.bytes, rel);
      if (!op.message.empty()) c.messages_sent.fetch_add(1, rel);
    } else {
      c.writes_failed.fetch_add(1, rel);
    }
  } else if (r.status.is_ok()) {
    c.messages_sent.fetch_add(1, rel);
  } else {
    c.messages_failed.fetch_add(1, rel);
  }
  const PeerId peer_id = op.peer;
  Completion done = std::move(op.done);
  forget_if_done(op);  // `op` may be gone from here on
  if (done) done(r);
  if (Peer* peer = find_peer(peer_id)) {
    if (--peer->active_ops == 0 && peer->removing) remove_peer(peer_id);
  }
}

void TransferLoop::State::forget_if_done(Op& op) {
  if (op.finished && op.outstanding == 0) ops.erase(op.id);
}

// ================================================================ peers

void TransferLoop::State::peer_ready(Peer& peer) {
  peer.ep.mark_ready();
  // Over shared memory the peer's regions are mapped into this process without page-table
  // entries: the first put into each 4 KiB page faulted (measured: a 512-token prompt's
  // 16 MiB of KV took 4096 faults inside the transfer). Once per peer, here, not per write.
  for (size_t i = 0; i < peer.rkeys.size(); ++i) {
    const auto& r = peer.descriptor->regions[i];
    if (size_t n = peer.rkeys[i].prefault(r.base, r.size); n > 0) {
      spdlog::debug("[{}] peer {}: prefaulted {} bytes of its region {}", opts.name, peer.id, n, i);
    }
  }
  std::string transports = summarize_endpoint_info(peer.ep.describe());
  spdlog::debug("[{}] peer {} ready over {}", opts.name, peer.id, transports);
  emit(peer.id, PeerState::kReady, {}, std::move(transports));
}

void TransferLoop::State::fail_peer(Peer& peer, Status why) {
  if (!peer.failure.is_ok()) return;
  peer.failure = Status(why.code() == Errc::kOk ? Errc::kUnavailable : why.code(),
                        "peer " + std::to_string(peer.id) + ": " + why.message());
  engine.counters.peers_failed.fetch_add(1, std::memory_order_relaxed);
  spdlog::warn("[{}] {}", opts.name, peer.failure.to_string());
  peer.ep.mark_failed(peer.failure);
  // Close first (force purges the endpoint's requests), so that when the completions below
  // report the failure nothing can still land at the peer.
  close_peer_endpoint(peer, /*force=*/true);
  std::vector<Op*> victims;
  for (auto& [id, op] : ops) {
    if (op->peer == peer.id && !op->finished && op->kind != Op::Kind::kConnect) victims.push_back(op.get());
  }
  const PeerId id = peer.id;
  const Status failure = peer.failure;
  emit(id, PeerState::kFailed, failure);
  for (Op* op : victims) finish(*op, failure);  // may remove the peer (if it was being removed)
}

void TransferLoop::State::close_peer_endpoint(Peer& peer, bool force) {
  if (peer.ep.state() == EndpointState::kClosed) {
    peer.rkeys.clear();
    return;
  }
  if (force) {
    // UCX wants remote keys destroyed after their operations complete and before the
    // endpoint goes; with operations possibly still queued on it, the force close (which
    // completes them) must come first. ucp_rkey_destroy does not use the endpoint.
    peer.ep.close(true);
    peer.rkeys.clear();
  } else {
    peer.rkeys.clear();  // every operation on the peer has completed
    peer.ep.close(false);
  }
  if (peer.ep.close_pending()) {
    closing.push_back({std::move(peer.ep), Clock::now() + opts.shutdown_timeout});
  }
}

// ================================================================ UCX callbacks

void TransferLoop::State::request_done(void* request, ucs_status_t status, void* user_data) {
  auto* op = static_cast<Op*>(user_data);  // alive: ops live until `outstanding` is zero
  if (status != UCS_OK && op->ucx_error == UCS_OK) op->ucx_error = status;
  --op->outstanding;
  ucp_request_free(request);
  op->loop->dirty_ops.push_back(op->id);
}

void TransferLoop::State::recv_done(void* request, ucs_status_t status, size_t /*length*/, void* user_data) {
  auto* recv = static_cast<RecvOp*>(user_data);
  recv->status = status;
  ucp_request_free(request);
  recv->loop->recvs_done.push_back(recv);
}

ucs_status_t TransferLoop::State::am_received(void* arg, const void* /*header*/, size_t /*header_length*/,
                                              void* data, size_t length, const ucp_am_recv_param_t* param) {
  auto* s = static_cast<State*>(arg);
  const bool rndv = (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0;
  if (length > s->opts.max_message_bytes || !s->opts.on_message) {
    s->engine.counters.messages_dropped.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("[{}] dropped a {}-byte message ({})", s->opts.name, length,
                 s->opts.on_message ? "over max_message_bytes" : "no handler");
    // For a rendezvous message an error status reaches the sender's send; an eager one is
    // simply released.
    return rndv ? UCS_ERR_EXCEEDS_LIMIT : UCS_OK;
  }
  if (rndv) {
    // The data is still at the sender: keep the descriptor (UCS_INPROGRESS) and fetch it with
    // ucp_am_recv_data_nbx once progress has returned.
    s->rndv_descs.emplace_back(data, length);
    return UCS_INPROGRESS;
  }
  s->received.push_back(length ? std::string(static_cast<const char*>(data), length) : std::string());
  return UCS_OK;
}

}  // namespace pdctl::kv

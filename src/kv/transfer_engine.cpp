// TransferEngine's public side: creation, validation and submission on the caller's thread.
// The transfer thread's side is in transfer_loop.cpp.
#include "kv/transfer_engine.h"

#include <algorithm>
#include <bit>

#include <spdlog/spdlog.h>

#include "kv/transfer_engine_impl.h"

namespace pdctl::kv {

const char* peer_state_name(PeerState s) {
  switch (s) {
    case PeerState::kConnecting: return "connecting";
    case PeerState::kReady: return "ready";
    case PeerState::kFailed: return "failed";
    case PeerState::kClosed: return "closed";
  }
  return "unknown";
}

// ---------------------------------------------------------------- counters

void AtomicCounters::record_write_latency(std::chrono::nanoseconds latency) {
  const uint64_t ns = uint64_t(std::max<int64_t>(0, latency.count()));
  write_latency_ns_sum.fetch_add(ns, std::memory_order_relaxed);
  // Only the transfer thread writes, so load-then-store cannot lose a larger value.
  if (ns > write_latency_ns_max.load(std::memory_order_relaxed)) {
    write_latency_ns_max.store(ns, std::memory_order_relaxed);
  }
  const uint64_t us = (ns + 999) / 1000;
  // Bucket i holds latencies in (2^(i-1), 2^i] microseconds.
  int bucket = us <= 1 ? 0 : int(std::bit_width(us - 1));
  bucket = std::min(bucket, TransferCounters::kLatencyBuckets - 1);
  buckets[size_t(bucket)].fetch_add(1, std::memory_order_relaxed);
}

TransferCounters AtomicCounters::snapshot() const {
  constexpr auto r = std::memory_order_relaxed;
  TransferCounters c;
  c.bytes_written = bytes_written.load(r);
  c.puts = puts.load(r);
  c.writes_completed = writes_completed.load(r);
  c.writes_failed = writes_failed.load(r);
  c.messages_sent = messages_sent.load(r);
  c.messages_failed = messages_failed.load(r);
  c.messages_received = messages_received.load(r);
  c.messages_dropped = messages_dropped.load(r);
  c.peers_failed = peers_failed.load(r);
  c.write_latency_ns_sum = write_latency_ns_sum.load(r);
  c.write_latency_ns_max = write_latency_ns_max.load(r);
  for (size_t i = 0; i < buckets.size(); ++i) c.write_latency_buckets[i] = buckets[i].load(r);
  return c;
}

// ---------------------------------------------------------------- Impl

TransferEngine::Impl::Impl() = default;

TransferEngine::Impl::~Impl() = default;

Status TransferEngine::Impl::submit(Command cmd) {
  std::lock_guard lock(mu);
  if (!accepting) return Status::unavailable("the transfer engine is shut down");
  queue.push_back(std::move(cmd));
  // Under the lock, so that it cannot race with the thread closing its async handle (which
  // it does only after the stop command, queued once `accepting` is false).
  loop->wake();
  return Status::ok();
}

void TransferEngine::Impl::set_peer_transports(PeerId peer, std::string transports) {
  std::lock_guard lock(mu);
  if (auto it = peers.find(peer); it != peers.end()) it->second.transports = std::move(transports);
}

// ---------------------------------------------------------------- TransferEngine

TransferEngine::TransferEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

TransferEngine::~TransferEngine() { shutdown(); }

Result<std::unique_ptr<TransferEngine>> TransferEngine::create(TransferOptions options) {
  if (options.operation_timeout.count() <= 0 || options.keepalive_interval.count() <= 0 ||
      options.shutdown_timeout.count() < 0) {
    return Status::invalid_argument("transfer engine timeouts must be positive");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  const TransferOptions& o = impl->options;

  UcxContextOptions ctx_opts;
  ctx_opts.transports = o.transports;
  // Our keepalive period first, so that an explicit ucx_settings entry still wins.
  ctx_opts.settings.emplace_back("KEEPALIVE_INTERVAL", std::to_string(o.keepalive_interval.count()) + "ms");
  for (const auto& s : o.ucx_settings) ctx_opts.settings.push_back(s);
  PDCTL_ASSIGN_OR_RETURN(impl->context, UcxContext::create(ctx_opts));

  EngineDescriptor desc;
  desc.process = self_identity();
  impl->self = desc.process;
  for (size_t i = 0; i < o.regions.size(); ++i) {
    const RegionSpec& spec = o.regions[i];
    auto mem = UcxMemory::map(impl->context, spec.address, spec.length);
    if (!mem) return std::move(mem).status().with_context("registering region " + std::to_string(i));
    auto rkey = mem->pack_rkey();
    if (!rkey) return std::move(rkey).status().with_context("region " + std::to_string(i));
    desc.regions.push_back({uint64_t(reinterpret_cast<uintptr_t>(mem->data())), mem->size(), std::move(*rkey)});
    impl->regions.push_back({mem->data(), mem->size()});
    impl->memory.push_back(std::move(*mem));
  }

  PDCTL_ASSIGN_OR_RETURN(UcxWorker worker, UcxWorker::create(impl->context));
  PDCTL_ASSIGN_OR_RETURN(desc.worker_address, worker.address());
  impl->descriptor = encode_descriptor(desc);

  impl->loop = std::make_unique<TransferLoop>(*impl, std::move(worker));
  PDCTL_RETURN_IF_ERROR(impl->loop->init());
  TransferLoop* loop = impl->loop.get();
  impl->thread = std::thread([loop] { loop->run(); });
  spdlog::debug("[{}] transfer engine started: {} region(s), UCX_TLS={}", o.name, impl->regions.size(),
                o.transports.empty() ? "(environment)" : o.transports);
  return std::unique_ptr<TransferEngine>(new TransferEngine(std::move(impl)));
}

const std::string& TransferEngine::descriptor() const { return impl_->descriptor; }

size_t TransferEngine::region_count() const { return impl_->regions.size(); }

Region TransferEngine::region(size_t index) const {
  return index < impl_->regions.size() ? impl_->regions[index] : Region{};
}

Result<PeerId> TransferEngine::add_peer(std::string_view descriptor) {
  PDCTL_ASSIGN_OR_RETURN(EngineDescriptor desc, decode_descriptor(descriptor));
  auto shared = std::make_shared<const EngineDescriptor>(std::move(desc));
  PeerId id = 0;
  {
    std::lock_guard lock(impl_->mu);
    if (!impl_->accepting) return Status::unavailable("the transfer engine is shut down");
    id = impl_->next_peer++;
    impl_->peers[id] = {shared, {}};
  }
  Command cmd;
  cmd.kind = Command::Kind::kConnect;
  cmd.peer = id;
  cmd.descriptor = std::move(shared);
  cmd.submitted = Clock::now();
  Status st = impl_->submit(std::move(cmd));
  if (!st) {
    std::lock_guard lock(impl_->mu);
    impl_->peers.erase(id);
    return st;
  }
  return id;
}

Status TransferEngine::remove_peer(PeerId peer) {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->peers.erase(peer) == 0) return Status::not_found("no peer " + std::to_string(peer));
  }
  Command cmd;
  cmd.kind = Command::Kind::kRemovePeer;
  cmd.peer = peer;
  cmd.submitted = Clock::now();
  return impl_->submit(std::move(cmd));
}

std::string TransferEngine::peer_transports(PeerId peer) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->peers.find(peer);
  return it == impl_->peers.end() ? std::string() : it->second.transports;
}

Status TransferEngine::write(WriteRequest request, Completion done) {
  const auto submitted = Clock::now();
  std::shared_ptr<const EngineDescriptor> desc;
  {
    std::lock_guard lock(impl_->mu);
    if (!impl_->accepting) return Status::unavailable("the transfer engine is shut down");
    auto it = impl_->peers.find(request.peer);
    if (it == impl_->peers.end()) return Status::not_found("no peer " + std::to_string(request.peer));
    desc = it->second.descriptor;
  }
  if (request.local_region >= impl_->regions.size()) {
    return Status::invalid_argument("no local region " + std::to_string(request.local_region));
  }
  if (request.remote_region >= desc->regions.size()) {
    return Status::invalid_argument("peer " + std::to_string(request.peer) + " has no region " +
                                    std::to_string(request.remote_region));
  }
  if (request.notice.size() > impl_->options.max_message_bytes) {
    return Status::invalid_argument("notice of " + std::to_string(request.notice.size()) + " bytes is over the " +
                                    std::to_string(impl_->options.max_message_bytes) + "-byte limit");
  }
  PlanLimits limits;
  limits.local_size = impl_->regions[request.local_region].size;
  limits.remote_size = desc->regions[request.remote_region].size;
  limits.max_put_bytes = impl_->options.max_put_bytes;
  PDCTL_ASSIGN_OR_RETURN(std::vector<Copy> puts, plan_puts(request.copies, limits));

  Command cmd;
  cmd.kind = Command::Kind::kWrite;
  cmd.peer = request.peer;
  for (const Copy& p : puts) cmd.bytes += p.length;
  cmd.puts = std::move(puts);
  cmd.local_region = request.local_region;
  cmd.remote_region = request.remote_region;
  cmd.message = std::move(request.notice);
  cmd.done = std::move(done);
  cmd.submitted = submitted;
  return impl_->submit(std::move(cmd));
}

Status TransferEngine::send(PeerId peer, std::string message, Completion done) {
  {
    std::lock_guard lock(impl_->mu);
    if (!impl_->accepting) return Status::unavailable("the transfer engine is shut down");
    if (!impl_->peers.contains(peer)) return Status::not_found("no peer " + std::to_string(peer));
  }
  if (message.size() > impl_->options.max_message_bytes) {
    return Status::invalid_argument("message of " + std::to_string(message.size()) + " bytes is over the " +
                                    std::to_string(impl_->options.max_message_bytes) + "-byte limit");
  }
  Command cmd;
  cmd.kind = Command::Kind::kSend;
  cmd.peer = peer;
  cmd.message = std::move(message);
  cmd.done = std::move(done);
  cmd.submitted = Clock::now();
  return impl_->submit(std::move(cmd));
}

TransferCounters TransferEngine::counters() const { return impl_->counters.snapshot(); }

void TransferEngine::shutdown() {
  if (!impl_) return;
  std::lock_guard serial(impl_->shutdown_mu);
  if (impl_->joined) return;
  if (impl_->thread.get_id() == std::this_thread::get_id()) {
    // Joining ourselves would deadlock; the contract forbids this, so fail loudly in logs.
    spdlog::error("[{}] TransferEngine::shutdown called from the transfer thread; ignored", impl_->options.name);
    return;
  }
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->accepting) {
      impl_->accepting = false;
      Command stop;
      stop.kind = Command::Kind::kStop;
      impl_->queue.push_back(std::move(stop));
      impl_->loop->wake();
    }
  }
  // Bounded: the loop stops within shutdown_timeout (plus one keepalive tick) of the stop.
  if (impl_->thread.joinable()) impl_->thread.join();
  impl_->joined = true;
}

}  // namespace pdctl::kv

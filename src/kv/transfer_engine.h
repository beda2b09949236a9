#pragma once
// The KV transfer engine: one-sided writes of KV blocks into a peer's registered memory, and
// small messages ("notices") to it, over UCX (RDMA where there is hardware for it, shared
// memory or TCP where not).
//
// Threads. The engine owns one transfer thread with its own libuv loop, which drives the
// UCX worker through the worker's event fd (it sleeps when there is nothing to do). Every
// public member may be called from any thread. Submissions only enqueue and wake the
// transfer thread: they never wait for the network. Callbacks (completions, received
// messages, peer events) run ON THE TRANSFER THREAD: keep them short, never block in them,
// and hand their results to your own thread (your own queue + uv_async_send, as the engine
// does); they may submit further work but must not call shutdown() or destroy the engine.
// Whatever the callbacks touch must outlive the engine: shutdown() runs the last of them.
//
// Ordering. Operations are started in the order they were submitted. The puts of one write
// may land in any order; the write completes only after an endpoint flush, i.e. when every
// put is visible in the peer's memory (see WriteRequest).
//
// Lifetime. The source bytes of a write must not change until its completion runs. On the
// receiving side the engine does not know which bytes a peer writes: pages handed to a peer
// may be reused only after its notice, or after the peer failed and was removed. Destroying the engine (or shutdown()) stops
// accepting work and gives in-flight operations `shutdown_timeout` to finish; the rest
// complete with kCancelled. Every accepted operation completes exactly once.
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "kv/transfer_plan.h"

namespace pdctl::kv {

using PeerId = uint64_t;  // 0 is never a valid id

// A region to register at start-up. address == nullptr: UCX allocates `length` bytes
// (shared memory when a shared-memory transport is enabled: peers on this host then write
// into it with plain stores, without this process's involvement). Otherwise the caller's
// memory, which must outlive the engine.
struct RegionSpec {
  void* address = nullptr;
  uint64_t length = 0;
};

// A registered region as this process sees it.
struct Region {
  std::byte* data = nullptr;
  uint64_t size = 0;
};

// How an operation ended. bytes: bytes written or sent; puts: the UCX puts it took (after
// merging and splitting); latency: from submission to completion.
struct TransferResult {
  Status status;
  uint64_t bytes = 0;
  uint32_t puts = 0;
  std::chrono::nanoseconds latency{0};
};
using Completion = std::function<void(const TransferResult&)>;

enum class PeerState { kConnecting, kReady, kFailed, kClosed };
const char* peer_state_name(PeerState s);

struct PeerEvent {
  PeerId peer = 0;
  PeerState state = PeerState::kConnecting;
  Status status;           // why, for kFailed
  std::string transports;  // kReady: the transports UCX chose, e.g. "posix/memory,cma/memory"
};

struct TransferOptions {
  static constexpr uint64_t kDefaultMaxPutBytes = uint64_t{1} << 20;
  static constexpr uint64_t kDefaultMaxMessageBytes = uint64_t{1} << 20;

  std::string name = "kv";  // in log lines
  // UCX_TLS semantics ("posix,cma,self", "sm,self", "tcp"); empty: the environment's
  // UCX_TLS, else all transports.
  std::string transports;
  // Further UCX settings: (name without "UCX_", value), e.g. {"NET_DEVICES", "lo"}.
  std::vector<std::pair<std::string, std::string>> ucx_settings;
  // Regions to register, in order: index i in writes and in region(i). A decode worker
  // registers its whole KV pool (usually UCX-allocated); a prefill worker its own pool, so
  // that its puts are zero-copy.
  std::vector<RegionSpec> regions;
  // Longest single put; longer contiguous runs are split. Over TCP, 1 MiB keeps UCX's
  // per-request buffers small and lets the writes of several requests interleave.
  uint64_t max_put_bytes = kDefaultMaxPutBytes;
  // An operation not completed by then fails with kTimeout, and its peer is failed with it
  // (a put could otherwise still land later, into pages that were handed back).
  std::chrono::milliseconds operation_timeout{30'000};
  // UCX keepalive period, and how often an idle transfer thread wakes to let UCX run it.
  // A dead peer is noticed within about two periods (sooner over TCP: a reset socket).
  std::chrono::milliseconds keepalive_interval{1'000};
  // UCX detects dead peers (UCP_ERR_HANDLING_MODE_PEER): keepalive and transport errors fail
  // the peer's operations within about two keepalive periods. UCX 1.13's posix and sysv
  // shared-memory transports cannot do this, so with it UCX moves data over cma (or tcp,
  // RDMA) and active messages over tcp (or RDMA): "posix,cma" alone fails with "no active
  // messages transport". Off (UCP_ERR_HANDLING_MODE_NONE): posix/sysv may carry everything,
  // but a dead peer is noticed only through operation_timeout.
  bool peer_failure_detection = true;
  // How long shutdown lets in-flight operations and endpoint closes finish.
  std::chrono::milliseconds shutdown_timeout{2'000};
  // Largest message accepted from a peer; a larger one is dropped (its sender's send then
  // fails with that status when the message came by rendezvous).
  uint64_t max_message_bytes = kDefaultMaxMessageBytes;

  // Transfer thread. A message sent by a peer's send() (or a WriteRequest's notice).
  std::function<void(std::string message)> on_message;
  // Transfer thread. A peer changed state (kReady once wire-up finished; kFailed; kClosed).
  std::function<void(const PeerEvent&)> on_peer_event;
};

// One write into a peer's region: puts (one-sided, the peer's CPU is not involved on
// shared memory or RDMA; over TCP the peer's transfer thread applies them), then an
// endpoint flush, then, when `notice` is not empty, `notice` sent as a message.
//
// Completion semantics (as UCX's ucp_put_nbx/ucp_ep_flush_nbx define them): a put's local
// completion only means its source buffer may be reused; it says nothing about the peer.
// The engine reports a write complete only after ucp_ep_flush_nbx completed on the
// endpoint, which means every put issued before it is complete at the target, i.e. visible
// in the peer's memory. With a notice, completion additionally waits for the notice's send
// to complete locally (handed to the network); the peer's on_message for it runs after
// the data is visible there, since the notice is sent only after the flush.
struct WriteRequest {
  PeerId peer = 0;
  uint32_t local_region = 0;   // index into this engine's regions
  uint32_t remote_region = 0;  // index into the peer's regions (its descriptor)
  std::vector<Copy> copies;    // may be empty: then only the flush (and notice)
  std::string notice;
};

// Counters since start, for metrics. Snapshot; each field is read atomically.
struct TransferCounters {
  static constexpr int kLatencyBuckets = 24;
  // Upper bound (inclusive) of latency bucket i in microseconds: 2^i; the last is +inf.
  static constexpr uint64_t latency_bucket_upper_us(int i) { return uint64_t{1} << i; }

  uint64_t bytes_written = 0;      // by completed writes
  uint64_t puts = 0;               // puts issued
  uint64_t writes_completed = 0;   // ok
  uint64_t writes_failed = 0;
  uint64_t messages_sent = 0;      // sends and notices completed ok
  uint64_t messages_failed = 0;
  uint64_t messages_received = 0;
  uint64_t messages_dropped = 0;   // too large, or no handler
  uint64_t peers_failed = 0;
  uint64_t write_latency_ns_sum = 0;  // over completed writes, ok or not
  uint64_t write_latency_ns_max = 0;
  std::array<uint64_t, kLatencyBuckets> write_latency_buckets{};  // counts, not cumulative
};

class TransferEngine {
 public:
  // Creates the UCX context and worker, registers the regions and starts the transfer
  // thread. Errors: UCX refused (e.g. kUnavailable/kUnsupported for a UCX_TLS with no
  // usable transport), an invalid option.
  static Result<std::unique_ptr<TransferEngine>> create(TransferOptions options);
  ~TransferEngine();  // shutdown()
  TransferEngine(const TransferEngine&) = delete;
  TransferEngine& operator=(const TransferEngine&) = delete;

  // What a peer needs to write here (encode of EngineDescriptor): hand it over by any
  // channel (the PD bootstrap). Immutable after create().
  const std::string& descriptor() const;
  size_t region_count() const;
  Region region(size_t index) const;

  // Connects to the engine that exported `descriptor`. Returns at once with the peer's id;
  // operations may be submitted immediately (they wait for wire-up). kCorrupt for a bad
  // descriptor, kUnavailable after shutdown. Wire-up failures arrive as a kFailed PeerEvent
  // and as the status of the peer's operations.
  Result<PeerId> add_peer(std::string_view descriptor);
  // Closes the endpoint after the peer's submitted operations have finished; later
  // submissions for it are refused (kNotFound). A kClosed PeerEvent follows. A failed peer
  // stays known (its operations fail fast) until it is removed; to reconnect, remove it and
  // add_peer again with its (new) descriptor.
  Status remove_peer(PeerId peer);
  // The transports UCX chose for the peer ("" until it is ready).
  std::string peer_transports(PeerId peer) const;

  // Submits a write. Returns an error and does NOT call `done` when the request is invalid
  // (kInvalidArgument: out of a region, overlapping destinations, unknown region), the peer
  // unknown (kNotFound) or the engine shut down (kUnavailable). Otherwise `done` runs
  // exactly once, on the transfer thread; its status is kUnavailable when the peer failed,
  // kTimeout past operation_timeout, kCancelled at shutdown.
  Status write(WriteRequest request, Completion done);

  // Sends `message` (at most our and the peer's max_message_bytes) to the peer's on_message.
  // `done` as for write(); an ok completion means sent locally (the buffer is no longer
  // needed), not delivered; a failed one does not prove that the peer did not get it (it
  // may have failed or closed right after). A message larger than the peer's limit fails
  // when it came by rendezvous (UCX returns the peer's refusal), else it is dropped there.
  Status send(PeerId peer, std::string message, Completion done);

  TransferCounters counters() const;

  // Stops accepting work, lets in-flight operations finish within shutdown_timeout, fails
  // the rest with kCancelled, closes endpoints and joins the thread. Idempotent. Must not be
  // called from the transfer thread (from a callback).
  void shutdown();

  struct Impl;

 private:
  explicit TransferEngine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pdctl::kv

#pragma once
// TransferEngine's hidden state: what callers touch (under `mu`), the immutable parts, and
// the transfer thread's loop. Only transfer_engine.cpp and transfer_loop.cpp include this.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "kv/transfer_descriptor.h"
#include "kv/transfer_engine.h"
#include "kv/ucx_handles.h"

namespace pdctl::kv {

using Clock = std::chrono::steady_clock;

// Work handed from a caller's thread to the transfer thread.
struct Command {
  enum class Kind { kConnect, kRemovePeer, kWrite, kSend, kStop };
  Kind kind = Kind::kStop;
  PeerId peer = 0;
  std::shared_ptr<const EngineDescriptor> descriptor;  // kConnect
  std::vector<Copy> puts;                              // kWrite: planned (merged, split)
  uint32_t local_region = 0;                           // kWrite
  uint32_t remote_region = 0;                          // kWrite
  uint64_t bytes = 0;                                  // kWrite: sum of put lengths
  std::string message;                                 // kSend; kWrite: the notice
  Completion done;                                     // kWrite, kSend
  Clock::time_point submitted;
};

// Counters, written by the transfer thread only (relaxed), read by anyone.
struct AtomicCounters {
  std::atomic<uint64_t> bytes_written{0}, puts{0}, writes_completed{0}, writes_failed{0},
      messages_sent{0}, messages_failed{0}, messages_received{0}, messages_dropped{0},
      peers_failed{0}, write_latency_ns_sum{0}, write_latency_ns_max{0};
  std::array<std::atomic<uint64_t>, TransferCounters::kLatencyBuckets> buckets{};

  void record_write_latency(std::chrono::nanoseconds latency);
  TransferCounters snapshot() const;
};

class TransferLoop;  // transfer_loop.cpp

struct TransferEngine::Impl {
  Impl();
  ~Impl();

  // ---- immutable after create()
  TransferOptions options;
  std::string descriptor;
  std::vector<Region> regions;
  ProcessIdentity self;

  // ---- UCX objects; members are destroyed bottom-up, which is the order UCX needs:
  // the loop (endpoints and remote keys, then the worker), then memory, then the context.
  UcxContext context;
  std::vector<UcxMemory> memory;
  std::unique_ptr<TransferLoop> loop;
  std::thread thread;

  // ---- shared between callers and the transfer thread
  mutable std::mutex mu;
  bool accepting = true;                 // false once shutdown began
  std::deque<Command> queue;             // drained by the transfer thread
  struct PeerEntry {
    std::shared_ptr<const EngineDescriptor> descriptor;
    std::string transports;              // set by the transfer thread once ready
  };
  std::unordered_map<PeerId, PeerEntry> peers;  // known to callers (removed ones are gone)
  PeerId next_peer = 1;
  std::mutex shutdown_mu;                // serialises shutdown() callers
  bool joined = false;

  AtomicCounters counters;

  // Queues a command and wakes the transfer thread; kUnavailable after shutdown began.
  Status submit(Command cmd);
  // Called by the transfer thread.
  void set_peer_transports(PeerId peer, std::string transports);
};

// The transfer thread's side: a libuv loop driving the UCX worker. Everything here runs on
// the transfer thread, except the constructor (before the thread starts) and wake().
class TransferLoop {
 public:
  TransferLoop(TransferEngine::Impl& engine, UcxWorker worker);
  ~TransferLoop();
  TransferLoop(const TransferLoop&) = delete;
  TransferLoop& operator=(const TransferLoop&) = delete;

  // Sets up the uv loop, the worker's event fd poll and the AM handler (caller's thread,
  // before the thread starts).
  Status init();
  // The thread body: runs until a kStop command has been handled and everything closed.
  void run();
  // Wakes the loop to drain the command queue; any thread (uv_async_send).
  void wake();

  struct State;

 private:
  std::unique_ptr<State> s_;
};

}  // namespace pdctl::kv

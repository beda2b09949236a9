#pragma once
// Owner types for the UCX handles of the transfer engine: context, worker, registered memory
// and unpacked remote keys (endpoints are in ucx_endpoint.h). Each is move-only and frees its
// handle in its destructor. UCX requires an order that these types cannot enforce by
// themselves: remote keys go before their endpoint, endpoints before their worker, workers
// and memory before their context. Whoever holds several of them declares the members in
// that order reversed (C++ destroys members bottom-up), as TransferEngine's state does.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <ucp/api/ucp.h>

#include "common/status.h"

namespace pdctl::kv {

struct UcxContextOptions {
  // UCX_TLS semantics ("posix,cma,self", "sm,self", "tcp", "^ib"). Empty: the environment's
  // UCX_TLS, else UCX's default (all transports).
  std::string transports;
  // Further UCX settings as (name without the "UCX_" prefix, value), applied after the
  // environment, so they win over it: {"NET_DEVICES", "lo"}, {"KEEPALIVE_INTERVAL", "1s"}.
  std::vector<std::pair<std::string, std::string>> settings;
};

// ucp_context_h with RMA, active messages and wake-up (event fd) enabled.
class UcxContext {
 public:
  static Result<UcxContext> create(const UcxContextOptions& options);
  UcxContext() = default;
  UcxContext(UcxContext&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  UcxContext& operator=(UcxContext&& o) noexcept;
  UcxContext(const UcxContext&) = delete;
  UcxContext& operator=(const UcxContext&) = delete;
  ~UcxContext();

  ucp_context_h get() const { return h_; }

 private:
  explicit UcxContext(ucp_context_h h) : h_(h) {}
  ucp_context_h h_ = nullptr;
};

// ucp_worker_h in UCS_THREAD_MODE_SINGLE: only one thread at a time may touch it (the
// transfer thread, once started; handing it over needs a happens-before such as starting
// that thread). Must be destroyed before its context.
class UcxWorker {
 public:
  static Result<UcxWorker> create(const UcxContext& context);
  UcxWorker() = default;
  UcxWorker(UcxWorker&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  UcxWorker& operator=(UcxWorker&& o) noexcept;
  UcxWorker(const UcxWorker&) = delete;
  UcxWorker& operator=(const UcxWorker&) = delete;
  ~UcxWorker();

  ucp_worker_h get() const { return h_; }
  // The worker's packed address: what a peer needs to create an endpoint to it.
  Result<std::string> address() const;
  // The fd that becomes readable when the armed worker has events (ucp_worker_get_efd);
  // owned by UCX, valid while the worker lives.
  Result<int> event_fd() const;

 private:
  explicit UcxWorker(ucp_worker_h h) : h_(h) {}
  ucp_worker_h h_ = nullptr;
};

// Memory registered with ucp_mem_map. With `address == nullptr` UCX allocates the memory
// itself (UCP_MEM_MAP_ALLOCATE): with a shared-memory transport enabled it comes from a
// shared segment that a peer on this host maps and writes with plain stores, without this
// process's involvement. Must be unmapped before its context is cleaned up, and only once no
// operation can still touch it.
class UcxMemory {
 public:
  static Result<UcxMemory> map(const UcxContext& context, void* address, size_t length);
  UcxMemory() = default;
  UcxMemory(UcxMemory&& o) noexcept;
  UcxMemory& operator=(UcxMemory&& o) noexcept;
  UcxMemory(const UcxMemory&) = delete;
  UcxMemory& operator=(const UcxMemory&) = delete;
  ~UcxMemory();

  ucp_mem_h get() const { return memh_; }
  std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  bool allocated_by_ucx() const { return allocated_; }
  // The packed remote key a peer unpacks to write into this memory.
  Result<std::string> pack_rkey() const;

 private:
  void reset();
  ucp_context_h context_ = nullptr;  // not owned
  ucp_mem_h memh_ = nullptr;
  std::byte* data_ = nullptr;
  size_t size_ = 0;
  bool allocated_ = false;
};

// A peer's remote key unpacked on one endpoint (ucp_ep_rkey_unpack). UCX's rule: destroy it
// after every operation that used it has completed (flushed), and before the endpoint it was
// unpacked on is destroyed.
class UcxRemoteKey {
 public:
  static Result<UcxRemoteKey> unpack(ucp_ep_h ep, std::string_view packed);
  UcxRemoteKey() = default;
  UcxRemoteKey(UcxRemoteKey&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  UcxRemoteKey& operator=(UcxRemoteKey&& o) noexcept;
  UcxRemoteKey(const UcxRemoteKey&) = delete;
  UcxRemoteKey& operator=(const UcxRemoteKey&) = delete;
  ~UcxRemoteKey();

  ucp_rkey_h get() const { return h_; }
  // Where UCX reaches the remote region through a local mapping (posix/sysv shared memory),
  // fills that mapping's page table now, so that puts do not take a page fault per 4 KiB
  // page the first time they touch it. Returns the bytes prefaulted (0: not mapped here).
  size_t prefault(uint64_t remote_base, size_t size) const;

 private:
  explicit UcxRemoteKey(ucp_rkey_h h) : h_(h) {}
  ucp_rkey_h h_ = nullptr;
};

}  // namespace pdctl::kv

#pragma once
// Who a process is, precisely enough for a peer on the same host to tell whether it is still
// running: UCX 1.13 cannot detect a dead peer over posix/sysv shared memory (those
// transports lack peer-failure support), so the engine checks same-host peers itself.
#include <cstdint>
#include <string>

namespace pdctl::kv {

struct ProcessIdentity {
  std::string host;         // boot id + pid namespace: equal only where `pid` means the same process
  uint32_t pid = 0;
  uint64_t start_time = 0;  // clock ticks after boot (/proc/PID/stat field 22): tells pid reuse apart
  friend bool operator==(const ProcessIdentity&, const ProcessIdentity&) = default;
};

// This process. `host` is empty when /proc does not tell (then no peer can check us).
ProcessIdentity self_identity();

enum class Liveness { kAlive, kGone, kUnknown };

// kUnknown when `peer` is on another host or pid namespace, or /proc cannot say; kGone when
// its pid no longer exists, is a zombie, or belongs to a newer process.
Liveness check_liveness(const ProcessIdentity& peer, const ProcessIdentity& self);

}  // namespace pdctl::kv

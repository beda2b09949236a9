#pragma once
// Turns a write's list of block copies into the puts that carry it: validated against both
// regions, runs that are contiguous on both sides merged into one put, and long runs split
// so that no put exceeds a limit. Pure functions, no UCX.
#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"

namespace pdctl::kv {

// One copy of `length` bytes from the local region at `local_offset` to the remote region at
// `remote_offset` (e.g. one (layer, page) block of K or of V).
struct Copy {
  uint64_t local_offset = 0;
  uint64_t remote_offset = 0;
  uint64_t length = 0;
  friend bool operator==(const Copy&, const Copy&) = default;
};

struct PlanLimits {
  uint64_t local_size = 0;     // bytes of the local region
  uint64_t remote_size = 0;    // bytes of the remote region
  uint64_t max_put_bytes = 0;  // largest single put; 0: no limit
};

// Returns the puts (as Copy values), sorted by remote offset. Zero-length copies are dropped.
// Errors (kInvalidArgument): a copy outside either region, or two copies whose destinations
// overlap (the result would depend on the order the puts land in, which nothing fixes).
Result<std::vector<Copy>> plan_puts(std::span<const Copy> copies, const PlanLimits& limits);

}  // namespace pdctl::kv

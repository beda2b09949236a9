#pragma once
// Where the KV pool's bytes live. The pool is one contiguous region so that it can be
// registered with UCX once; who provides that region differs by process: anonymous memory
// by default, a UCX-allocated region in the PD decode role, device memory for a GPU backend.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "common/status.h"

namespace pdctl::kv {

// One region of memory owned by whoever allocated it; freed by the destructor.
class KvMemory {
 public:
  virtual ~KvMemory() = default;
  virtual uint8_t* data() = 0;
  virtual size_t size() const = 0;
  // Whether the CPU may read and write the bytes (false for device memory).
  virtual bool host_accessible() const = 0;
};

// Allocates a region of at least `bytes` bytes, zero-filled or not.
using KvMemoryProvider = std::function<Result<std::unique_ptr<KvMemory>>(size_t bytes)>;

// The default provider: a private anonymous mapping, zero-filled and committed lazily
// (MAP_NORESERVE), so a large pool costs resident memory only for the pages written.
Result<std::unique_ptr<KvMemory>> allocate_anonymous_kv_memory(size_t bytes);

}  // namespace pdctl::kv

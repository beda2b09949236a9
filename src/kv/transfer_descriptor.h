#pragma once
// What a transfer engine exports so that a peer can write into it: its UCX worker address,
// who its process is, and, per registered region, the base address, size and packed remote key. Encoded as one
// opaque, versioned byte string (binary; base64 it to put it in JSON).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "kv/process_identity.h"

namespace pdctl::kv {

struct RegionDescriptor {
  uint64_t base = 0;    // virtual address in the exporting process
  uint64_t size = 0;    // bytes
  std::string rkey;     // packed ucp remote key
  friend bool operator==(const RegionDescriptor&, const RegionDescriptor&) = default;
};

struct EngineDescriptor {
  std::string worker_address;  // packed ucp worker address
  ProcessIdentity process;     // lets a same-host peer notice that this process died
  std::vector<RegionDescriptor> regions;
  friend bool operator==(const EngineDescriptor&, const EngineDescriptor&) = default;
};

std::string encode_descriptor(const EngineDescriptor& d);
// kCorrupt when the bytes are not a descriptor of this version (truncated, wrong magic, ...).
Result<EngineDescriptor> decode_descriptor(std::string_view bytes);

}  // namespace pdctl::kv

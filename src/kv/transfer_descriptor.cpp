#include "kv/transfer_descriptor.h"

namespace pdctl::kv {

namespace {

// "PDKV", then a version; bump it when the layout changes so that mixed builds refuse
// each other instead of misreading.
constexpr std::string_view kMagic = "PDKV";
constexpr uint32_t kVersion = 1;
// Generous bounds, only to refuse garbage before allocating for it.
constexpr uint64_t kMaxBlobPart = uint64_t{1} << 20;
constexpr uint32_t kMaxRegions = 1024;

void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(char((v >> (8 * i)) & 0xff));
}
void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(char((v >> (8 * i)) & 0xff));
}
void put_bytes(std::string& out, std::string_view b) {
  put_u32(out, uint32_t(b.size()));
  out.append(b);
}

class Reader {
 public:
  explicit Reader(std::string_view b) : b_(b) {}
  bool u32(uint32_t& v) {
    if (b_.size() < 4) return false;
    v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t(uint8_t(b_[i])) << (8 * i);
    b_.remove_prefix(4);
    return true;
  }
  bool u64(uint64_t& v) {
    if (b_.size() < 8) return false;
    v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t(uint8_t(b_[i])) << (8 * i);
    b_.remove_prefix(8);
    return true;
  }
  bool bytes(std::string& out) {
    uint32_t n = 0;
    if (!u32(n) || n > kMaxBlobPart || b_.size() < n) return false;
    out.assign(b_.substr(0, n));
    b_.remove_prefix(n);
    return true;
  }
  bool raw(std::string_view expect) {
    if (b_.substr(0, expect.size()) != expect) return false;
    b_.remove_prefix(expect.size());
    return true;
  }
  bool empty() const { return b_.empty(); }

 private:
  std::string_view b_;
};

}  // namespace

std::string encode_descriptor(const EngineDescriptor& d) {
  std::string out(kMagic);
  put_u32(out, kVersion);
  put_bytes(out, d.worker_address);
  put_bytes(out, d.process.host);
  put_u32(out, d.process.pid);
  put_u64(out, d.process.start_time);
  put_u32(out, uint32_t(d.regions.size()));
  for (const RegionDescriptor& r : d.regions) {
    put_u64(out, r.base);
    put_u64(out, r.size);
    put_bytes(out, r.rkey);
  }
  return out;
}

Result<EngineDescriptor> decode_descriptor(std::string_view bytes) {
  Reader in(bytes);
  uint32_t version = 0;
  if (!in.raw(kMagic)) return Status::corrupt("not a pdctl transfer-engine descriptor (bad magic)");
  if (!in.u32(version) || version != kVersion) {
    return Status::corrupt("transfer-engine descriptor version " + std::to_string(version) + ", expected " +
                           std::to_string(kVersion));
  }
  EngineDescriptor d;
  uint32_t n = 0;
  if (!in.bytes(d.worker_address) || d.worker_address.empty() || !in.bytes(d.process.host) ||
      !in.u32(d.process.pid) || !in.u64(d.process.start_time) || !in.u32(n) || n > kMaxRegions) {
    return Status::corrupt("truncated transfer-engine descriptor");
  }
  d.regions.resize(n);
  for (RegionDescriptor& r : d.regions) {
    if (!in.u64(r.base) || !in.u64(r.size) || !in.bytes(r.rkey)) {
      return Status::corrupt("truncated transfer-engine descriptor");
    }
  }
  if (!in.empty()) return Status::corrupt("trailing bytes after the transfer-engine descriptor");
  return d;
}

}  // namespace pdctl::kv

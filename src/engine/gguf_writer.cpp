#include "engine/gguf_writer.h"

#include <fstream>

#include <fmt/format.h>

namespace pdctl::engine {

namespace {
constexpr uint64_t kAlignment = 32;  // GGUF's default general.alignment
}

void GgufWriter::str(const std::string& s) {
  raw(static_cast<uint64_t>(s.size()));
  kv_.insert(kv_.end(), s.begin(), s.end());
}

void GgufWriter::key(const std::string& k, GgufValueType t) {
  str(k);
  raw(static_cast<uint32_t>(t));
  ++n_kv_;
}

void GgufWriter::add_string(const std::string& k, const std::string& v) { key(k, GgufValueType::kString); str(v); }
void GgufWriter::add_u32(const std::string& k, uint32_t v) { key(k, GgufValueType::kU32); raw(v); }
void GgufWriter::add_i32(const std::string& k, int32_t v) { key(k, GgufValueType::kI32); raw(v); }
void GgufWriter::add_u64(const std::string& k, uint64_t v) { key(k, GgufValueType::kU64); raw(v); }
void GgufWriter::add_f32(const std::string& k, float v) { key(k, GgufValueType::kF32); raw(v); }
void GgufWriter::add_bool(const std::string& k, bool v) { key(k, GgufValueType::kBool); raw(static_cast<uint8_t>(v)); }

void GgufWriter::add_string_array(const std::string& k, const std::vector<std::string>& v) {
  key(k, GgufValueType::kArray);
  raw(static_cast<uint32_t>(GgufValueType::kString));
  raw(static_cast<uint64_t>(v.size()));
  for (const auto& s : v) str(s);
}
void GgufWriter::add_f32_array(const std::string& k, const std::vector<float>& v) {
  key(k, GgufValueType::kArray);
  raw(static_cast<uint32_t>(GgufValueType::kF32));
  raw(static_cast<uint64_t>(v.size()));
  for (float x : v) raw(x);
}
void GgufWriter::add_i32_array(const std::string& k, const std::vector<int32_t>& v) {
  key(k, GgufValueType::kArray);
  raw(static_cast<uint32_t>(GgufValueType::kI32));
  raw(static_cast<uint64_t>(v.size()));
  for (int32_t x : v) raw(x);
}

void GgufWriter::add_tensor(const std::string& name, GgmlType type, std::vector<int64_t> dims, uint64_t nbytes, Emit emit) {
  tensors_.push_back(Tensor{name, type, std::move(dims), nbytes, std::move(emit)});
}

void GgufWriter::add_tensor(const std::string& name, GgmlType type, std::vector<int64_t> dims,
                            std::span<const uint8_t> bytes) {
  add_tensor(name, type, std::move(dims), bytes.size(), [bytes](const std::function<void(const void*, size_t)>& out) {
    out(bytes.data(), bytes.size());
    return Status::ok();
  });
}

Status GgufWriter::write(const std::string& path, uint32_t version) const {
  if (version != 2 && version != 3) return Status::invalid_argument(fmt::format("GGUF version {}", version));
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) return Status::io(fmt::format("{}: cannot open for writing", path));
  uint64_t pos = 0;
  auto out = [&](const void* p, size_t n) {
    f.write(static_cast<const char*>(p), static_cast<std::streamsize>(n));
    pos += n;
  };
  auto put = [&](const auto& v) { out(&v, sizeof(v)); };
  auto pad = [&] {
    static const uint8_t zeros[kAlignment] = {};
    out(zeros, (kAlignment - pos % kAlignment) % kAlignment);
  };
  put(uint32_t{0x46554747});
  put(version);
  put(static_cast<uint64_t>(tensors_.size()));
  put(n_kv_);
  out(kv_.data(), kv_.size());
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    put(static_cast<uint64_t>(t.name.size()));
    out(t.name.data(), t.name.size());
    put(static_cast<uint32_t>(t.dims.size()));
    for (int64_t d : t.dims) put(static_cast<uint64_t>(d));
    put(static_cast<uint32_t>(t.type));
    put(offset);
    offset += (t.nbytes + kAlignment - 1) / kAlignment * kAlignment;
  }
  pad();
  for (const Tensor& t : tensors_) {
    const uint64_t start = pos;
    PDCTL_RETURN_IF_ERROR(t.emit(out).with_context(fmt::format("{}: tensor '{}'", path, t.name)));
    if (pos - start != t.nbytes) {
      return Status::internal(fmt::format("{}: tensor '{}' wrote {} bytes, declared {}", path, t.name, pos - start, t.nbytes));
    }
    pad();
  }
  f.flush();
  if (!f) return Status::io(fmt::format("{}: write failed", path));
  return Status::ok();
}

}  // namespace pdctl::engine

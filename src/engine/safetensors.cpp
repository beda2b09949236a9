#include "engine/safetensors.h"

#include <cstring>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace pdctl::engine {
namespace {

constexpr uint64_t kMaxHeader = 100u << 20;  // as the reference implementation's limit

// Element size of a safetensors dtype name; 0 for an unknown name.
size_t element_size(const std::string& d) {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
  return 0;
}

const char* safetensors_dtype(DType d) {
  switch (d) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kQ8_0: return nullptr;
  }
  return nullptr;
}

}  // namespace

Result<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  PDCTL_ASSIGN_OR_RETURN(MappedFile map, MappedFile::open(path));
  PDCTL_ASSIGN_OR_RETURN(SafetensorsFile f, parse(map.bytes(), path));
  f.map_ = std::move(map);
  return f;
}

Result<SafetensorsFile> SafetensorsFile::parse(std::span<const uint8_t> bytes, const std::string& name) {
  SafetensorsFile f;
  f.name_ = name;
  if (bytes.size() < 8) {
    return Status::corrupt(fmt::format("{}: truncated file: {} bytes, no room for the 8-byte header length", name,
                                       bytes.size()));
  }
  uint64_t hlen = 0;
  std::memcpy(&hlen, bytes.data(), 8);
  if (hlen > kMaxHeader || hlen > bytes.size() - 8) {
    return Status::corrupt(fmt::format("{}: header length {} exceeds the file ({} bytes): not safetensors or truncated",
                                       name, hlen, bytes.size()));
  }
  const char* hp = reinterpret_cast<const char*>(bytes.data() + 8);
  nlohmann::json h = nlohmann::json::parse(hp, hp + hlen, nullptr, /*allow_exceptions=*/false);
  if (h.is_discarded() || !h.is_object()) {
    return Status::corrupt(fmt::format("{}: the header is not a JSON object", name));
  }
  const uint8_t* data = bytes.data() + 8 + hlen;
  const uint64_t data_size = bytes.size() - 8 - hlen;
  for (auto it = h.begin(); it != h.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const std::string& tn = it.key();
    const auto& e = it.value();
    auto bad = [&](const std::string& why) {
      return Status::corrupt(fmt::format("{}: tensor '{}': {}", name, tn, why));
    };
    if (!e.is_object() || !e.contains("dtype") || !e["dtype"].is_string() || !e.contains("shape") ||
        !e["shape"].is_array() || !e.contains("data_offsets") || !e["data_offsets"].is_array() ||
        e["data_offsets"].size() != 2) {
      return bad("entry needs 'dtype', 'shape' and two 'data_offsets'");
    }
    RawTensor t;
    t.file = name;
    t.name = tn;
    t.dtype_name = e["dtype"].get<std::string>();
    const size_t esize = element_size(t.dtype_name);
    if (esize == 0) return bad(fmt::format("unknown dtype '{}'", t.dtype_name));
    if (t.dtype_name == "F32") t.dtype = DType::kF32;
    else if (t.dtype_name == "F16") t.dtype = DType::kF16;
    else if (t.dtype_name == "BF16") t.dtype = DType::kBF16;
    uint64_t elems = 1;
    for (const auto& d : e["shape"]) {
      if (!d.is_number_unsigned() && !(d.is_number_integer() && d.get<int64_t>() >= 0)) {
        return bad("shape holds a value that is not a non-negative integer");
      }
      const uint64_t v = d.get<uint64_t>();
      if (v > (uint64_t{1} << 40) || (v != 0 && elems > (uint64_t{1} << 50) / v)) return bad("impossibly large shape");
      elems *= v;
      t.shape.push_back(static_cast<int64_t>(v));
    }
    const auto& off = e["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned()) return bad("data_offsets are not integers");
    const uint64_t b = off[0].get<uint64_t>(), en = off[1].get<uint64_t>();
    if (b > en || en > data_size) {
      return bad(fmt::format("bytes [{}, {}) run past the end of the data ({} bytes): truncated or corrupt", b, en,
                             data_size));
    }
    if (en - b != elems * esize) {
      return bad(fmt::format("{} bytes for {} elements of {}", en - b, elems, t.dtype_name));
    }
    t.data = data + b;
    f.tensors_.emplace(tn, std::move(t));
  }
  return f;
}

const RawTensor* SafetensorsFile::find(const std::string& n) const {
  auto it = tensors_.find(n);
  return it == tensors_.end() ? nullptr : &it->second;
}

Status write_safetensors(const std::string& path, const std::vector<SafetensorsEntry>& entries) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  h["__metadata__"] = {{"format", "pt"}};
  uint64_t off = 0;
  for (const auto& e : entries) {
    const char* d = safetensors_dtype(e.dtype);
    if (!d) return Status::unsupported(fmt::format("{}: tensor '{}': safetensors has no {}", path, e.name, dtype_name(e.dtype)));
    h[e.name] = {{"dtype", d}, {"shape", e.shape}, {"data_offsets", {off, off + e.bytes.size()}}};
    off += e.bytes.size();
  }
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');  // keeps the data 8-byte aligned
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Status::io(fmt::format("{}: cannot open for writing", path));
  const uint64_t hlen = header.size();
  out.write(reinterpret_cast<const char*>(&hlen), 8);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  for (const auto& e : entries) out.write(reinterpret_cast<const char*>(e.bytes.data()), static_cast<std::streamsize>(e.bytes.size()));
  out.flush();
  if (!out) return Status::io(fmt::format("{}: write failed", path));
  return Status::ok();
}

}  // namespace pdctl::engine

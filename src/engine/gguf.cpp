#include "engine/gguf.h"

#include <cstring>

#include <fmt/format.h>

namespace pdctl::engine {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" little-endian
constexpr int kMaxDims = 4;                  // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 2;

// A bounds-checked little-endian cursor over the header.
class Reader {
 public:
  Reader(std::span<const uint8_t> b, const std::string& name) : b_(b), name_(name) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return b_.size() - pos_; }

  template <class T>
  Status read(T& out, const char* what) {
    if (remaining() < sizeof(T)) return truncated(what);
    std::memcpy(&out, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return Status::ok();
  }

  Status read_string(std::string& out, const char* what) {
    uint64_t len = 0;
    PDCTL_RETURN_IF_ERROR(read(len, what));
    if (len > remaining()) {
      return Status::corrupt(fmt::format("{}: {} at byte {} claims {} bytes, only {} left", name_,
                                         what, pos_ - 8, len, remaining()));
    }
    out.assign(reinterpret_cast<const char*>(b_.data() + pos_), len);
    pos_ += len;
    return Status::ok();
  }

  Status truncated(const char* what) const {
    return Status::corrupt(fmt::format("{}: truncated file: {} at byte {} runs past the end ({} bytes)",
                                       name_, what, pos_, b_.size()));
  }

 private:
  std::span<const uint8_t> b_;
  const std::string& name_;
  size_t pos_ = 0;
};

const char* value_type_name(GgufValueType t) {
  switch (t) {
    case GgufValueType::kU8: return "u8";
    case GgufValueType::kI8: return "i8";
    case GgufValueType::kU16: return "u16";
    case GgufValueType::kI16: return "i16";
    case GgufValueType::kU32: return "u32";
    case GgufValueType::kI32: return "i32";
    case GgufValueType::kF32: return "f32";
    case GgufValueType::kBool: return "bool";
    case GgufValueType::kString: return "string";
    case GgufValueType::kArray: return "array";
    case GgufValueType::kU64: return "u64";
    case GgufValueType::kI64: return "i64";
    case GgufValueType::kF64: return "f64";
  }
  return "unknown";
}

bool known_value_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufValueType::kF64); }

size_t min_encoded_size(GgufValueType t) {
  switch (t) {
    case GgufValueType::kU8: case GgufValueType::kI8: case GgufValueType::kBool: return 1;
    case GgufValueType::kU16: case GgufValueType::kI16: return 2;
    case GgufValueType::kU32: case GgufValueType::kI32: case GgufValueType::kF32: return 4;
    case GgufValueType::kU64: case GgufValueType::kI64: case GgufValueType::kF64:
    case GgufValueType::kString: return 8;
    case GgufValueType::kArray: return 12;
  }
  return 1;
}

// Reads one scalar of type `t` as the widened variant alternative.
Status read_scalar(Reader& r, GgufValueType t, GgufValue& out, const std::string& key) {
  auto as_u = [&](auto raw) -> Status {
    PDCTL_RETURN_IF_ERROR(r.read(raw, key.c_str()));
    out.v = static_cast<uint64_t>(raw);
    return Status::ok();
  };
  auto as_i = [&](auto raw) -> Status {
    PDCTL_RETURN_IF_ERROR(r.read(raw, key.c_str()));
    out.v = static_cast<int64_t>(raw);
    return Status::ok();
  };
  switch (t) {
    case GgufValueType::kU8: return as_u(uint8_t{});
    case GgufValueType::kU16: return as_u(uint16_t{});
    case GgufValueType::kU32: return as_u(uint32_t{});
    case GgufValueType::kU64: return as_u(uint64_t{});
    case GgufValueType::kI8: return as_i(int8_t{});
    case GgufValueType::kI16: return as_i(int16_t{});
    case GgufValueType::kI32: return as_i(int32_t{});
    case GgufValueType::kI64: return as_i(int64_t{});
    case GgufValueType::kF32: {
      float f = 0;
      PDCTL_RETURN_IF_ERROR(r.read(f, key.c_str()));
      out.v = static_cast<double>(f);
      return Status::ok();
    }
    case GgufValueType::kF64: {
      double d = 0;
      PDCTL_RETURN_IF_ERROR(r.read(d, key.c_str()));
      out.v = d;
      return Status::ok();
    }
    case GgufValueType::kBool: {
      uint8_t b = 0;
      PDCTL_RETURN_IF_ERROR(r.read(b, key.c_str()));
      out.v = b != 0;
      return Status::ok();
    }
    case GgufValueType::kString: {
      std::string s;
      PDCTL_RETURN_IF_ERROR(r.read_string(s, key.c_str()));
      out.v = std::move(s);
      return Status::ok();
    }
    case GgufValueType::kArray: break;
  }
  return Status::internal("read_scalar called with an array type");
}

Status read_value(Reader& r, GgufValueType t, GgufValue& out, const std::string& key,
                  const std::string& file, int depth) {
  out.type = t;
  if (t != GgufValueType::kArray) return read_scalar(r, t, out, key);
  if (depth >= kMaxArrayDepth) {
    return Status::corrupt(fmt::format("{}: key '{}': arrays nested too deeply", file, key));
  }
  uint32_t et = 0;
  uint64_t n = 0;
  PDCTL_RETURN_IF_ERROR(r.read(et, key.c_str()));
  PDCTL_RETURN_IF_ERROR(r.read(n, key.c_str()));
  if (!known_value_type(et)) {
    return Status::corrupt(fmt::format("{}: key '{}': unknown array element type {}", file, key, et));
  }
  const auto elem = static_cast<GgufValueType>(et);
  out.elem_type = elem;
  if (n > r.remaining() / min_encoded_size(elem)) {
    return Status::corrupt(fmt::format("{}: key '{}': array of {} {} runs past the end of the file",
                                       file, key, n, value_type_name(elem)));
  }
  GgufValue item;
  switch (elem) {
    case GgufValueType::kString: {
      std::vector<std::string> v;
      v.reserve(n);
      for (uint64_t i = 0; i < n; ++i) {
        std::string s;
        PDCTL_RETURN_IF_ERROR(r.read_string(s, key.c_str()));
        v.push_back(std::move(s));
      }
      out.v = std::move(v);
      return Status::ok();
    }
    case GgufValueType::kF32: case GgufValueType::kF64: {
      std::vector<double> v;
      v.reserve(n);
      for (uint64_t i = 0; i < n; ++i) {
        PDCTL_RETURN_IF_ERROR(read_scalar(r, elem, item, key));
        v.push_back(std::get<double>(item.v));
      }
      out.v = std::move(v);
      return Status::ok();
    }
    case GgufValueType::kBool: {
      std::vector<bool> v;
      v.reserve(n);
      for (uint64_t i = 0; i < n; ++i) {
        PDCTL_RETURN_IF_ERROR(read_scalar(r, elem, item, key));
        v.push_back(std::get<bool>(item.v));
      }
      out.v = std::move(v);
      return Status::ok();
    }
    case GgufValueType::kArray: {
      // Nested arrays are legal but unused by the models we load: validate and skip.
      for (uint64_t i = 0; i < n; ++i) {
        GgufValue nested;
        PDCTL_RETURN_IF_ERROR(read_value(r, GgufValueType::kArray, nested, key, file, depth + 1));
      }
      out.v = std::monostate{};
      return Status::ok();
    }
    default: {
      std::vector<int64_t> v;
      v.reserve(n);
      for (uint64_t i = 0; i < n; ++i) {
        PDCTL_RETURN_IF_ERROR(read_scalar(r, elem, item, key));
        if (auto* u = std::get_if<uint64_t>(&item.v)) {
          v.push_back(static_cast<int64_t>(*u));
        } else {
          v.push_back(std::get<int64_t>(item.v));
        }
      }
      out.v = std::move(v);
      return Status::ok();
    }
  }
}

}  // namespace

const char* ggml_type_name(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::kF32: return "F32";
    case GgmlType::kF16: return "F16";
    case GgmlType::kQ4_0: return "Q4_0";
    case GgmlType::kQ4_1: return "Q4_1";
    case GgmlType::kQ5_0: return "Q5_0";
    case GgmlType::kQ5_1: return "Q5_1";
    case GgmlType::kQ8_0: return "Q8_0";
    case GgmlType::kQ8_1: return "Q8_1";
    case GgmlType::kQ2_K: return "Q2_K";
    case GgmlType::kQ3_K: return "Q3_K";
    case GgmlType::kQ4_K: return "Q4_K";
    case GgmlType::kQ5_K: return "Q5_K";
    case GgmlType::kQ6_K: return "Q6_K";
    case GgmlType::kQ8_K: return "Q8_K";
    case GgmlType::kBF16: return "BF16";
  }
  return "unknown";
}

std::optional<std::pair<uint32_t, uint32_t>> ggml_block_layout(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::kF32: return std::pair<uint32_t, uint32_t>{4, 1};
    case GgmlType::kF16: return std::pair<uint32_t, uint32_t>{2, 1};
    case GgmlType::kBF16: return std::pair<uint32_t, uint32_t>{2, 1};
    case GgmlType::kQ4_0: return std::pair<uint32_t, uint32_t>{18, 32};
    case GgmlType::kQ4_1: return std::pair<uint32_t, uint32_t>{20, 32};
    case GgmlType::kQ5_0: return std::pair<uint32_t, uint32_t>{22, 32};
    case GgmlType::kQ5_1: return std::pair<uint32_t, uint32_t>{24, 32};
    case GgmlType::kQ8_0: return std::pair<uint32_t, uint32_t>{34, 32};
    case GgmlType::kQ8_1: return std::pair<uint32_t, uint32_t>{36, 32};
    case GgmlType::kQ2_K: return std::pair<uint32_t, uint32_t>{84, 256};
    case GgmlType::kQ3_K: return std::pair<uint32_t, uint32_t>{110, 256};
    case GgmlType::kQ4_K: return std::pair<uint32_t, uint32_t>{144, 256};
    case GgmlType::kQ5_K: return std::pair<uint32_t, uint32_t>{176, 256};
    case GgmlType::kQ6_K: return std::pair<uint32_t, uint32_t>{210, 256};
    case GgmlType::kQ8_K: return std::pair<uint32_t, uint32_t>{292, 256};
  }
  return std::nullopt;
}

int64_t GgufTensorInfo::elements() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

Result<GgufFile> GgufFile::open(const std::string& path) {
  PDCTL_ASSIGN_OR_RETURN(MappedFile map, MappedFile::open(path));
  PDCTL_ASSIGN_OR_RETURN(GgufFile f, parse(map.bytes(), path));
  f.map_ = std::move(map);  // the tensor pointers stay valid: the mapping does not move
  return f;
}

Result<GgufFile> GgufFile::parse(std::span<const uint8_t> bytes, const std::string& name) {
  GgufFile f;
  f.name_ = name;
  Reader r(bytes, f.name_);

  uint32_t magic = 0;
  PDCTL_RETURN_IF_ERROR(r.read(magic, "magic"));
  if (magic != kGgufMagic) {
    return Status::corrupt(fmt::format("{}: not a GGUF file (magic 0x{:08x}, expected 0x{:08x} \"GGUF\")",
                                       name, magic, kGgufMagic));
  }
  PDCTL_RETURN_IF_ERROR(r.read(f.version_, "version"));
  if (f.version_ != 2 && f.version_ != 3) {
    return Status::unsupported(fmt::format("{}: GGUF version {} (supported: 2 and 3)", name, f.version_));
  }
  uint64_t n_tensors = 0, n_kv = 0;
  PDCTL_RETURN_IF_ERROR(r.read(n_tensors, "tensor count"));
  PDCTL_RETURN_IF_ERROR(r.read(n_kv, "metadata count"));
  // Each key/value takes at least 13 bytes and each tensor info at least 28.
  if (n_kv > r.remaining() / 13 || n_tensors > r.remaining() / 28) {
    return Status::corrupt(fmt::format("{}: header claims {} metadata entries and {} tensors, more than the file holds",
                                       name, n_kv, n_tensors));
  }

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key;
    PDCTL_RETURN_IF_ERROR(r.read_string(key, "metadata key"));
    uint32_t t = 0;
    PDCTL_RETURN_IF_ERROR(r.read(t, key.c_str()));
    if (!known_value_type(t)) {
      return Status::corrupt(fmt::format("{}: key '{}': unknown value type {}", name, key, t));
    }
    GgufValue v;
    PDCTL_RETURN_IF_ERROR(read_value(r, static_cast<GgufValueType>(t), v, key, name, 0));
    if (!f.kv_.emplace(key, std::move(v)).second) {
      return Status::corrupt(fmt::format("{}: key '{}' appears twice", name, key));
    }
  }

  if (f.has("general.alignment")) {
    PDCTL_ASSIGN_OR_RETURN(int64_t a, f.get_int("general.alignment"));
    if (a <= 0 || (a & (a - 1)) != 0 || a > (1 << 20)) {
      return Status::corrupt(fmt::format("{}: key 'general.alignment' = {} is not a power of two", name, a));
    }
    f.alignment_ = static_cast<uint64_t>(a);
  }

  f.tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    PDCTL_RETURN_IF_ERROR(r.read_string(t.name, "tensor name"));
    uint32_t n_dims = 0;
    PDCTL_RETURN_IF_ERROR(r.read(n_dims, t.name.c_str()));
    if (n_dims == 0 || n_dims > kMaxDims) {
      return Status::corrupt(fmt::format("{}: tensor '{}' has {} dimensions (1 to {} allowed)", name,
                                         t.name, n_dims, kMaxDims));
    }
    for (uint32_t d = 0; d < n_dims; ++d) {
      int64_t dim = 0;
      PDCTL_RETURN_IF_ERROR(r.read(dim, t.name.c_str()));
      if (dim <= 0 || dim > (int64_t{1} << 40)) {
        return Status::corrupt(fmt::format("{}: tensor '{}' has dimension {} = {}", name, t.name, d, dim));
      }
      t.dims.push_back(dim);
    }
    PDCTL_RETURN_IF_ERROR(r.read(t.type, t.name.c_str()));
    PDCTL_RETURN_IF_ERROR(r.read(t.offset, t.name.c_str()));
    if (f.tensor_index_.count(t.name)) {
      return Status::corrupt(fmt::format("{}: tensor '{}' appears twice", name, t.name));
    }
    f.tensor_index_.emplace(t.name, f.tensors_.size());
    f.tensors_.push_back(std::move(t));
  }

  const uint64_t data_start = (r.pos() + f.alignment_ - 1) / f.alignment_ * f.alignment_;
  for (GgufTensorInfo& t : f.tensors_) {
    auto layout = ggml_block_layout(t.type);
    if (!layout) {
      return Status::unsupported(fmt::format("{}: tensor '{}' has unknown ggml type {}", name, t.name, t.type));
    }
    const auto [block_bytes, block_elems] = *layout;
    if (t.dims[0] % block_elems != 0) {
      return Status::corrupt(fmt::format("{}: tensor '{}' of type {}: row of {} elements is not a whole number of {}-element blocks",
                                         name, t.name, ggml_type_name(t.type), t.dims[0], block_elems));
    }
    // dims are each < 2^40, but their product may still overflow: check as we go.
    uint64_t elems = 1;
    for (int64_t d : t.dims) {
      if (elems > (uint64_t{1} << 50) / static_cast<uint64_t>(d)) {
        return Status::corrupt(fmt::format("{}: tensor '{}' is impossibly large", name, t.name));
      }
      elems *= static_cast<uint64_t>(d);
    }
    t.nbytes = elems / block_elems * block_bytes;
    if (t.offset % f.alignment_ != 0) {
      return Status::corrupt(fmt::format("{}: tensor '{}' offset {} is not aligned to {}", name, t.name,
                                         t.offset, f.alignment_));
    }
    if (data_start > bytes.size() || t.offset > bytes.size() - data_start ||
        t.nbytes > bytes.size() - data_start - t.offset) {
      return Status::corrupt(fmt::format(
          "{}: tensor '{}' ({} bytes at offset {}) runs past the end of the file ({} bytes): truncated or corrupt",
          name, t.name, t.nbytes, data_start + t.offset, bytes.size()));
    }
    t.data = bytes.data() + data_start + t.offset;
  }
  return f;
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

const GgufTensorInfo* GgufFile::tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {
Status missing(const std::string& file, const std::string& key) {
  return Status::not_found(fmt::format("{}: metadata key '{}' is missing", file, key));
}
Status wrong_type(const std::string& file, const std::string& key, const GgufValue& v, const char* want) {
  return Status::corrupt(fmt::format("{}: metadata key '{}' is {}, expected {}", file, key,
                                     value_type_name(v.type), want));
}
}  // namespace

Result<std::string> GgufFile::get_string(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return missing(name_, key);
  if (auto* s = std::get_if<std::string>(&v->v)) return *s;
  return wrong_type(name_, key, *v, "a string");
}

Result<int64_t> GgufFile::get_int(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return missing(name_, key);
  if (auto* i = std::get_if<int64_t>(&v->v)) return *i;
  if (auto* u = std::get_if<uint64_t>(&v->v)) {
    if (*u > static_cast<uint64_t>(INT64_MAX)) return wrong_type(name_, key, *v, "an integer below 2^63");
    return static_cast<int64_t>(*u);
  }
  return wrong_type(name_, key, *v, "an integer");
}

Result<double> GgufFile::get_float(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return missing(name_, key);
  if (auto* d = std::get_if<double>(&v->v)) return *d;
  if (auto* i = std::get_if<int64_t>(&v->v)) return static_cast<double>(*i);
  if (auto* u = std::get_if<uint64_t>(&v->v)) return static_cast<double>(*u);
  return wrong_type(name_, key, *v, "a number");
}

Result<bool> GgufFile::get_bool(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return missing(name_, key);
  if (auto* b = std::get_if<bool>(&v->v)) return *b;
  return wrong_type(name_, key, *v, "a boolean");
}

Result<std::vector<std::string>> GgufFile::get_string_array(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return missing(name_, key);
  if (auto* a = std::get_if<std::vector<std::string>>(&v->v)) return *a;
  return wrong_type(name_, key, *v, "an array of strings");
}

Result<std::vector<int64_t>> GgufFile::get_int_array(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return missing(name_, key);
  if (auto* a = std::get_if<std::vector<int64_t>>(&v->v)) return *a;
  return wrong_type(name_, key, *v, "an array of integers");
}

Result<std::vector<double>> GgufFile::get_float_array(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return missing(name_, key);
  if (auto* a = std::get_if<std::vector<double>>(&v->v)) return *a;
  return wrong_type(name_, key, *v, "an array of numbers");
}

}  // namespace pdctl::engine

#pragma once
// GGUF (v2, v3) reader: the metadata key/values and the tensor directory of a file that
// stays memory-mapped; tensor data is used in place. Every length, count and offset is
// checked against the file, so a truncated or corrupt file is an error, never a crash.
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "common/mapped_file.h"
#include "common/status.h"

namespace pdctl::engine {

// Value types of GGUF metadata.
enum class GgufValueType : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};

// ggml tensor types this project knows by name (others are reported by number).
enum class GgmlType : uint32_t {
  kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ5_0 = 6, kQ5_1 = 7, kQ8_0 = 8, kQ8_1 = 9,
  kQ2_K = 10, kQ3_K = 11, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14, kQ8_K = 15, kBF16 = 30,
};
const char* ggml_type_name(uint32_t type);
// Bytes of one block and elements per block; nullopt for types without a known layout.
std::optional<std::pair<uint32_t, uint32_t>> ggml_block_layout(uint32_t type);

// One metadata value. Arrays keep their element type; numbers are widened
// (integers to int64/uint64, floats to double), strings are copied out of the map.
struct GgufValue {
  GgufValueType type = GgufValueType::kU8;
  GgufValueType elem_type = GgufValueType::kU8;  // for arrays
  std::variant<std::monostate, uint64_t, int64_t, double, bool, std::string,
               std::vector<int64_t>, std::vector<double>, std::vector<std::string>,
               std::vector<bool>>
      v;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> dims;  // GGUF order: dims[0] is the contiguous (innermost) one
  uint32_t type = 0;          // a GgmlType value
  uint64_t offset = 0;        // from the start of the data section
  const uint8_t* data = nullptr;
  uint64_t nbytes = 0;
  int64_t elements() const;
};

class GgufFile {
 public:
  // Maps and parses a file.
  static Result<GgufFile> open(const std::string& path);
  // Parses bytes that the caller keeps alive (used by tests); `name` labels errors.
  static Result<GgufFile> parse(std::span<const uint8_t> bytes, const std::string& name);

  uint32_t version() const { return version_; }
  const std::string& path() const { return name_; }
  uint64_t alignment() const { return alignment_; }

  bool has(const std::string& key) const { return kv_.count(key) != 0; }
  const GgufValue* find(const std::string& key) const;
  const std::map<std::string, GgufValue>& metadata() const { return kv_; }

  // Typed getters: a missing key or a value of another type is an error naming the key.
  Result<std::string> get_string(const std::string& key) const;
  Result<int64_t> get_int(const std::string& key) const;      // any integer type
  Result<double> get_float(const std::string& key) const;     // any number
  Result<bool> get_bool(const std::string& key) const;
  Result<std::vector<std::string>> get_string_array(const std::string& key) const;
  Result<std::vector<int64_t>> get_int_array(const std::string& key) const;
  Result<std::vector<double>> get_float_array(const std::string& key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* tensor(const std::string& name) const;

 private:
  MappedFile map_;  // empty when parsed from caller-owned bytes
  std::string name_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::map<std::string, GgufValue> kv_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace pdctl::engine

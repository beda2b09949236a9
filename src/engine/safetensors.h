#pragma once
// safetensors: an 8-byte little-endian header length, a JSON header mapping tensor names to
// {dtype, shape, data_offsets}, then the data. The reader keeps the file mapped and checks
// every offset against it; the writer is for tests and tools.
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "common/mapped_file.h"
#include "common/status.h"
#include "engine/weights.h"

namespace pdctl::engine {

class SafetensorsFile {
 public:
  static Result<SafetensorsFile> open(const std::string& path);
  // Parses bytes the caller keeps alive; `name` labels errors.
  static Result<SafetensorsFile> parse(std::span<const uint8_t> bytes, const std::string& name);

  const std::string& path() const { return name_; }
  // Tensors by name; dtype is set for F32, F16 and BF16 only (others are listed, not usable).
  const std::map<std::string, RawTensor>& tensors() const { return tensors_; }
  const RawTensor* find(const std::string& name) const;

 private:
  MappedFile map_;
  std::string name_;
  std::map<std::string, RawTensor> tensors_;
};

struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::kF32;          // F32, F16 or BF16
  std::vector<int64_t> shape;
  std::span<const uint8_t> bytes;
};
// Writes `entries` to `path` (in the order given).
Status write_safetensors(const std::string& path, const std::vector<SafetensorsEntry>& entries);

}  // namespace pdctl::engine

#pragma once
// Writes GGUF files (v2 or v3): metadata key/values and tensors, aligned as llama.cpp
// expects. Used by tests (round trips, corrupt-file cases) and by `bench --save-gguf`.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "engine/gguf.h"

namespace pdctl::engine {

class GgufWriter {
 public:
  void add_string(const std::string& key, const std::string& v);
  void add_u32(const std::string& key, uint32_t v);
  void add_i32(const std::string& key, int32_t v);
  void add_u64(const std::string& key, uint64_t v);
  void add_f32(const std::string& key, float v);
  void add_bool(const std::string& key, bool v);
  void add_string_array(const std::string& key, const std::vector<std::string>& v);
  void add_f32_array(const std::string& key, const std::vector<float>& v);
  void add_i32_array(const std::string& key, const std::vector<int32_t>& v);

  // A tensor of `nbytes` bytes; `dims` in GGUF order (dims[0] is the contiguous one).
  // `emit` writes exactly nbytes through `out` when the file is written, so large tensors
  // can be streamed (converted or permuted) without a copy in memory.
  using Emit = std::function<Status(const std::function<void(const void*, size_t)>& out)>;
  void add_tensor(const std::string& name, GgmlType type, std::vector<int64_t> dims, uint64_t nbytes, Emit emit);
  // A tensor whose bytes the caller keeps alive until write().
  void add_tensor(const std::string& name, GgmlType type, std::vector<int64_t> dims, std::span<const uint8_t> bytes);

  Status write(const std::string& path, uint32_t version = 3) const;

 private:
  struct Tensor {
    std::string name;
    GgmlType type;
    std::vector<int64_t> dims;
    uint64_t nbytes;
    Emit emit;
  };
  void key(const std::string& k, GgufValueType t);
  template <class T>
  void raw(const T& v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    kv_.insert(kv_.end(), p, p + sizeof(T));
  }
  void str(const std::string& s);

  std::vector<uint8_t> kv_;  // encoded key/values
  uint64_t n_kv_ = 0;
  std::vector<Tensor> tensors_;
};

}  // namespace pdctl::engine

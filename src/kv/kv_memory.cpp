#include "kv/kv_memory.h"

#include <cerrno>
#include <cstring>
#include <sys/mman.h>

#include <fmt/format.h>

namespace pdctl::kv {
namespace {

class AnonymousKvMemory final : public KvMemory {
 public:
  AnonymousKvMemory(uint8_t* p, size_t n) : p_(p), n_(n) {}
  AnonymousKvMemory(const AnonymousKvMemory&) = delete;
  AnonymousKvMemory& operator=(const AnonymousKvMemory&) = delete;
  ~AnonymousKvMemory() override { ::munmap(p_, n_); }
  uint8_t* data() override { return p_; }
  size_t size() const override { return n_; }
  bool host_accessible() const override { return true; }

 private:
  uint8_t* p_;
  size_t n_;
};

}  // namespace

Result<std::unique_ptr<KvMemory>> allocate_anonymous_kv_memory(size_t bytes) {
  if (bytes == 0) return Status::invalid_argument("KV memory of 0 bytes");
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    return Status::resource_exhausted(fmt::format("mmap of {} bytes for the KV pool: {}", bytes, std::strerror(errno)));
  }
  return std::unique_ptr<KvMemory>(std::make_unique<AnonymousKvMemory>(static_cast<uint8_t*>(p), bytes));
}

}  // namespace pdctl::kv

#pragma once
// The paged KV pool: one contiguous region holding, for every layer, a K array and a V
// array of [num_pages][page_size][num_kv_heads][head_dim] elements (ARCHITECTURE.md).
// One (layer, K|V, page) block is contiguous, so it is the unit that is copied or sent to
// another process; the offsets below are what the transfer engine registers and puts.
//
// Pages are reference-counted so that a prefix cache can share them: allocate() hands out
// pages with count 1, ref() adds a holder, unref() drops one and returns the page to the
// free list at zero.
//
// Threading: not thread-safe. One thread (the engine thread) allocates, references and
// releases pages; other threads may only read or write the bytes of pages whose reference
// the engine thread handed to them (ARCHITECTURE.md: pages change hands by handoff).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "common/status.h"
#include "kv/kv_memory.h"

namespace pdctl::kv {

enum class KvDType : uint8_t { kF32, kF16, kBF16 };
const char* kv_dtype_name(KvDType t);
size_t kv_dtype_size(KvDType t);

enum class KvPart : uint8_t { kK = 0, kV = 1 };

// The shape of a pool; everything a peer needs to address its blocks.
struct KvGeometry {
  int num_layers = 0;
  int num_pages = 0;
  int page_size = 0;      // tokens per page
  int num_kv_heads = 0;
  int head_dim = 0;
  KvDType dtype = KvDType::kF32;

  Status validate() const;
  // Bytes of one token's K (or V) in one layer: num_kv_heads * head_dim elements.
  size_t token_bytes() const { return static_cast<size_t>(num_kv_heads) * head_dim * kv_dtype_size(dtype); }
  // Bytes of one (layer, K|V, page) block.
  size_t block_bytes() const { return token_bytes() * static_cast<size_t>(page_size); }
  // Bytes of the whole pool.
  size_t total_bytes() const { return block_bytes() * static_cast<size_t>(num_pages) * 2 * num_layers; }
  // Offset of block (layer, part, page) from the start of the region.
  size_t block_offset(int layer, KvPart part, int page) const {
    return ((static_cast<size_t>(layer) * 2 + static_cast<size_t>(part)) * static_cast<size_t>(num_pages) +
            static_cast<size_t>(page)) * block_bytes();
  }
  // KV bytes one token takes over all layers, K and V.
  size_t bytes_per_token() const { return token_bytes() * 2 * num_layers; }
};

class KvPool {
 public:
  // Allocates the region from `provider` (default: anonymous memory).
  static Result<std::unique_ptr<KvPool>> create(const KvGeometry& geometry, const KvMemoryProvider& provider = {});

  KvPool(const KvPool&) = delete;
  KvPool& operator=(const KvPool&) = delete;

  const KvGeometry& geometry() const { return geo_; }
  KvMemory& memory() { return *mem_; }
  uint8_t* base() { return mem_->data(); }
  size_t bytes() const { return geo_.total_bytes(); }
  // Start of block (layer, part, page); host memory only if memory().host_accessible().
  uint8_t* block(int layer, KvPart part, int page) { return base() + geo_.block_offset(layer, part, page); }

  int num_pages() const { return geo_.num_pages; }
  int page_size() const { return geo_.page_size; }
  int free_pages() const { return static_cast<int>(free_.size()); }
  // Pages needed to hold `tokens` tokens.
  int pages_for_tokens(int64_t tokens) const {
    return static_cast<int>((tokens + geo_.page_size - 1) / geo_.page_size);
  }

  // `n` pages, each with reference count 1, or kResourceExhausted (and nothing taken)
  // when fewer than `n` are free. Pages come out in ascending order from a fresh pool, so
  // tables tend to hold runs of consecutive ids (which the transfer engine merges).
  Result<std::vector<int32_t>> allocate(int n);
  // One more holder of an allocated page.
  Status ref(int32_t page);
  // One holder fewer; the page is free again when none is left.
  Status unref(int32_t page);
  // unref() of every page in `pages` (the first error is returned; the rest still run).
  Status release(std::span<const int32_t> pages);
  // 0 for a free page; -1 for an id out of range.
  int ref_count(int32_t page) const;

 private:
  KvPool(const KvGeometry& g, std::unique_ptr<KvMemory> mem);
  Status check_page(int32_t page, const char* what) const;

  KvGeometry geo_;
  std::unique_ptr<KvMemory> mem_;
  std::vector<int32_t> refs_;
  std::vector<int32_t> free_;  // a stack; the back is handed out first
};

// How many tokens the pool holds (rounded down to whole pages, at least one page):
//  1. `max_total_tokens` when set;
//  2. else the memory budget: mem_fraction_static * physical_memory - weight_bytes,
//     divided by bytes_per_token;
//  capped in case 2 at context_length * max_running_requests, which is all that the
//  worker can ever use: a small model does not reserve gigabytes it cannot fill.
struct KvSizing {
  std::optional<int64_t> max_total_tokens;
  double mem_fraction_static = 0.3;
  int64_t physical_memory_bytes = 0;
  int64_t weight_bytes = 0;
  int64_t bytes_per_token = 0;
  int64_t context_length = 0;
  int64_t max_running_requests = 0;
  int page_size = 16;
};
Result<int64_t> kv_pool_tokens(const KvSizing& s);
// Physical memory of this machine (sysconf), 0 if unknown.
int64_t physical_memory_bytes();

}  // namespace pdctl::kv

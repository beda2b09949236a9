#include "kv/kv_pool.h"

#include <algorithm>
#include <unistd.h>

#include <fmt/format.h>

namespace pdctl::kv {

const char* kv_dtype_name(KvDType t) {
  switch (t) {
    case KvDType::kF32: return "float32";
    case KvDType::kF16: return "float16";
    case KvDType::kBF16: return "bfloat16";
  }
  return "unknown";
}

size_t kv_dtype_size(KvDType t) {
  switch (t) {
    case KvDType::kF32: return 4;
    case KvDType::kF16: return 2;
    case KvDType::kBF16: return 2;
  }
  return 0;
}

Status KvGeometry::validate() const {
  if (num_layers <= 0 || num_pages <= 0 || page_size <= 0 || num_kv_heads <= 0 || head_dim <= 0) {
    return Status::invalid_argument(fmt::format(
        "KV pool geometry must be positive: layers {}, pages {}, page size {}, kv heads {}, head dim {}",
        num_layers, num_pages, page_size, num_kv_heads, head_dim));
  }
  // Keep every offset well inside size_t and page ids inside int32.
  const double total = static_cast<double>(token_bytes()) * page_size * num_pages * 2 * num_layers;
  if (total > static_cast<double>(int64_t{1} << 46)) {
    return Status::out_of_range(fmt::format("KV pool of {:.0f} bytes is too large", total));
  }
  return Status::ok();
}

KvPool::KvPool(const KvGeometry& g, std::unique_ptr<KvMemory> mem)
    : geo_(g), mem_(std::move(mem)), refs_(static_cast<size_t>(g.num_pages), 0) {
  free_.reserve(static_cast<size_t>(g.num_pages));
  for (int32_t p = g.num_pages - 1; p >= 0; --p) free_.push_back(p);
}

Result<std::unique_ptr<KvPool>> KvPool::create(const KvGeometry& g, const KvMemoryProvider& provider) {
  PDCTL_RETURN_IF_ERROR(g.validate());
  const size_t bytes = g.total_bytes();
  Result<std::unique_ptr<KvMemory>> mem = provider ? provider(bytes) : allocate_anonymous_kv_memory(bytes);
  if (!mem.has_value()) return std::move(mem).status().with_context("allocating the KV pool");
  if (!*mem || (*mem)->size() < bytes) {
    return Status::internal(fmt::format("KV memory provider returned less than the {} bytes asked for", bytes));
  }
  return std::unique_ptr<KvPool>(new KvPool(g, std::move(mem).value()));
}

Status KvPool::check_page(int32_t page, const char* what) const {
  if (page < 0 || page >= geo_.num_pages) {
    return Status::out_of_range(fmt::format("{} of page {}: not in [0, {})", what, page, geo_.num_pages));
  }
  if (refs_[static_cast<size_t>(page)] == 0) {
    return Status::internal(fmt::format("{} of page {}, which is free", what, page));
  }
  return Status::ok();
}

Result<std::vector<int32_t>> KvPool::allocate(int n) {
  if (n < 0) return Status::invalid_argument(fmt::format("allocating {} pages", n));
  if (static_cast<size_t>(n) > free_.size()) {
    return Status::resource_exhausted(
        fmt::format("KV pool full: {} pages asked for, {} of {} free", n, free_.size(), geo_.num_pages));
  }
  std::vector<int32_t> out(free_.end() - n, free_.end());
  std::reverse(out.begin(), out.end());
  free_.resize(free_.size() - static_cast<size_t>(n));
  for (int32_t p : out) refs_[static_cast<size_t>(p)] = 1;
  return out;
}

Status KvPool::ref(int32_t page) {
  PDCTL_RETURN_IF_ERROR(check_page(page, "ref"));
  ++refs_[static_cast<size_t>(page)];
  return Status::ok();
}

Status KvPool::unref(int32_t page) {
  PDCTL_RETURN_IF_ERROR(check_page(page, "unref"));
  if (--refs_[static_cast<size_t>(page)] == 0) free_.push_back(page);
  return Status::ok();
}

Status KvPool::release(std::span<const int32_t> pages) {
  Status first;
  for (int32_t p : pages) {
    Status st = unref(p);
    if (!st.is_ok() && first.is_ok()) first = std::move(st);
  }
  return first;
}

int KvPool::ref_count(int32_t page) const {
  if (page < 0 || page >= geo_.num_pages) return -1;
  return refs_[static_cast<size_t>(page)];
}

Result<int64_t> kv_pool_tokens(const KvSizing& s) {
  if (s.page_size <= 0 || s.bytes_per_token <= 0) {
    return Status::invalid_argument("KV sizing needs a positive page size and bytes per token");
  }
  int64_t tokens = 0;
  if (s.max_total_tokens) {
    tokens = *s.max_total_tokens;
  } else {
    const double budget = s.mem_fraction_static * static_cast<double>(s.physical_memory_bytes) -
                          static_cast<double>(s.weight_bytes);
    if (budget < static_cast<double>(s.bytes_per_token) * s.page_size) {
      return Status::resource_exhausted(fmt::format(
          "no memory left for the KV pool: --mem-fraction-static {} of {} bytes is {:.0f} bytes, the weights "
          "take {}; raise --mem-fraction-static or set --max-total-tokens",
          s.mem_fraction_static, s.physical_memory_bytes, s.mem_fraction_static * s.physical_memory_bytes,
          s.weight_bytes));
    }
    tokens = static_cast<int64_t>(budget / static_cast<double>(s.bytes_per_token));
    if (s.context_length > 0 && s.max_running_requests > 0) {
      tokens = std::min(tokens, s.context_length * s.max_running_requests);
    }
  }
  tokens = tokens / s.page_size * s.page_size;
  return std::max<int64_t>(tokens, s.page_size);
}

int64_t physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page = ::sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return 0;
  return static_cast<int64_t>(pages) * page;
}

}  // namespace pdctl::kv

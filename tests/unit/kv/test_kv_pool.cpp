#include <doctest/doctest.h>

#include <cstring>
#include <set>

#include "kv/kv_pool.h"

using namespace pdctl::kv;

namespace {
KvGeometry small_geometry() {
  KvGeometry g;
  g.num_layers = 3;
  g.num_pages = 8;
  g.page_size = 4;
  g.num_kv_heads = 2;
  g.head_dim = 8;
  g.dtype = KvDType::kF16;
  return g;
}
}  // namespace

TEST_CASE("kv pool: layout puts each (layer, K|V, page) block contiguously, K before V per layer") {
  const KvGeometry g = small_geometry();
  CHECK(g.token_bytes() == 2 * 8 * 2);
  CHECK(g.block_bytes() == 4 * 2 * 8 * 2);
  CHECK(g.total_bytes() == g.block_bytes() * 8 * 2 * 3);
  CHECK(g.bytes_per_token() == g.token_bytes() * 2 * 3);
  CHECK(g.block_offset(0, KvPart::kK, 0) == 0);
  CHECK(g.block_offset(0, KvPart::kK, 1) == g.block_bytes());
  CHECK(g.block_offset(0, KvPart::kV, 0) == 8 * g.block_bytes());
  CHECK(g.block_offset(1, KvPart::kK, 0) == 16 * g.block_bytes());
  CHECK(g.block_offset(2, KvPart::kV, 7) + g.block_bytes() == g.total_bytes());
  // Every block is distinct and the blocks tile the region exactly.
  std::set<size_t> offsets;
  for (int l = 0; l < 3; ++l)
    for (KvPart p : {KvPart::kK, KvPart::kV})
      for (int pg = 0; pg < 8; ++pg) offsets.insert(g.block_offset(l, p, pg));
  CHECK(offsets.size() == 48);

  auto pool = KvPool::create(g);
  REQUIRE(pool.has_value());
  KvPool& p = **pool;
  CHECK(p.bytes() == g.total_bytes());
  CHECK(p.memory().size() >= g.total_bytes());
  CHECK(p.block(2, KvPart::kV, 7) + g.block_bytes() == p.base() + g.total_bytes());
  // The whole region is writable.
  std::memset(p.base(), 0xab, p.bytes());
}

TEST_CASE("kv pool: allocation, reference counts and the free list") {
  auto pool = KvPool::create(small_geometry());
  REQUIRE(pool.has_value());
  KvPool& p = **pool;
  CHECK(p.free_pages() == 8);
  auto a = p.allocate(3);
  REQUIRE(a.has_value());
  CHECK(*a == std::vector<int32_t>{0, 1, 2});  // ascending from a fresh pool
  CHECK(p.free_pages() == 5);
  for (int32_t pg : *a) CHECK(p.ref_count(pg) == 1);

  // Full: an error, and nothing is taken.
  auto too_many = p.allocate(6);
  REQUIRE_FALSE(too_many.has_value());
  CHECK(too_many.status().code() == pdctl::Errc::kResourceExhausted);
  CHECK(p.free_pages() == 5);

  // A shared page returns to the free list only when its last holder lets go.
  CHECK(p.ref(1).is_ok());
  CHECK(p.ref_count(1) == 2);
  CHECK(p.release(*a).is_ok());
  CHECK(p.free_pages() == 7);
  CHECK(p.ref_count(1) == 1);
  CHECK(p.ref_count(0) == 0);
  CHECK(p.unref(1).is_ok());
  CHECK(p.free_pages() == 8);

  // Misuse is an error, not a corruption of the free list.
  CHECK(p.unref(1).code() == pdctl::Errc::kInternal);
  CHECK(p.ref(0).code() == pdctl::Errc::kInternal);
  CHECK(p.ref(99).code() == pdctl::Errc::kOutOfRange);
  CHECK(p.ref_count(-1) == -1);
  CHECK(p.free_pages() == 8);

  auto all = p.allocate(8);
  REQUIRE(all.has_value());
  CHECK(std::set<int32_t>(all->begin(), all->end()).size() == 8);
  CHECK(p.free_pages() == 0);
  CHECK_FALSE(p.allocate(1).has_value());
  CHECK(p.allocate(0).has_value());
}

TEST_CASE("kv pool: a custom memory provider supplies the region") {
  struct Vec final : KvMemory {
    std::vector<uint8_t> v;
    uint8_t* data() override { return v.data(); }
    size_t size() const override { return v.size(); }
    bool host_accessible() const override { return true; }
  };
  size_t asked = 0;
  uint8_t* given = nullptr;
  KvMemoryProvider provider = [&](size_t bytes) -> pdctl::Result<std::unique_ptr<KvMemory>> {
    asked = bytes;
    auto m = std::make_unique<Vec>();
    m->v.resize(bytes);
    given = m->v.data();
    return std::unique_ptr<KvMemory>(std::move(m));
  };
  auto pool = KvPool::create(small_geometry(), provider);
  REQUIRE(pool.has_value());
  CHECK(asked == small_geometry().total_bytes());
  CHECK((*pool)->base() == given);

  KvMemoryProvider short_provider = [](size_t bytes) -> pdctl::Result<std::unique_ptr<KvMemory>> {
    auto m = std::make_unique<Vec>();
    m->v.resize(bytes / 2);
    return std::unique_ptr<KvMemory>(std::move(m));
  };
  CHECK_FALSE(KvPool::create(small_geometry(), short_provider).has_value());
  KvGeometry bad = small_geometry();
  bad.page_size = 0;
  CHECK_FALSE(KvPool::create(bad).has_value());
}

TEST_CASE("kv pool: sizing rule") {
  KvSizing s;
  s.page_size = 16;
  s.bytes_per_token = 1000;
  s.max_total_tokens = 100;
  CHECK(*kv_pool_tokens(s) == 96);  // whole pages
  s.max_total_tokens = 3;
  CHECK(*kv_pool_tokens(s) == 16);  // at least one page
  s.max_total_tokens.reset();
  s.physical_memory_bytes = int64_t{10} << 30;
  s.mem_fraction_static = 0.5;
  s.weight_bytes = int64_t{1} << 30;
  s.context_length = 2048;
  s.max_running_requests = 4;
  CHECK(*kv_pool_tokens(s) == 2048 * 4);  // capped by what the worker can use
  s.context_length = int64_t{1} << 30;
  CHECK(*kv_pool_tokens(s) == ((int64_t{4} << 30) / 1000) / 16 * 16);  // the memory budget
  s.weight_bytes = int64_t{6} << 30;
  auto r = kv_pool_tokens(s);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.status().message().find("--max-total-tokens") != std::string::npos);
  CHECK(physical_memory_bytes() > 0);
}

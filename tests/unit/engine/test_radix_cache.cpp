// The prefix cache on its own, over a tiny KV pool: page-granular matching, node splits,
// de-duplication on insert, locking, LRU eviction, and that every reference it takes is
// given back.
#include <doctest/doctest.h>

#include <numeric>

#include "engine/radix_cache.h"

using namespace pdctl;
using namespace pdctl::engine;

namespace {

constexpr int kPage = 4;

std::unique_ptr<kv::KvPool> make_pool(int pages = 16) {
  kv::KvGeometry g;
  g.num_layers = 1;
  g.num_pages = pages;
  g.page_size = kPage;
  g.num_kv_heads = 1;
  g.head_dim = 1;
  auto p = kv::KvPool::create(g);
  REQUIRE_MESSAGE(p.has_value(), p.status().to_string());
  return std::move(p).value();
}

std::vector<int32_t> seq(int32_t from, int n) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), from);
  return v;
}

std::vector<int32_t> alloc(kv::KvPool& pool, int n) {
  auto p = pool.allocate(n);
  REQUIRE(p.has_value());
  return *p;
}

// A request's life: pages for `tokens`, cached, released.
RadixCache::Node* cache_and_release(RadixCache& c, kv::KvPool& pool, const std::vector<int32_t>& tokens) {
  auto pages = alloc(pool, pool.pages_for_tokens(static_cast<int64_t>(tokens.size())));
  RadixCache::Node* n = c.insert(tokens, pages);
  CHECK(pool.release(pages).is_ok());
  return n;
}

}  // namespace

TEST_CASE("radix cache: only whole pages are cached and matched") {
  auto pool = make_pool();
  RadixCache c(*pool);
  CHECK(c.match(seq(0, 10)).pages.empty());  // empty tree
  const auto tokens = seq(0, 10);              // two whole pages and a partial one
  CHECK(cache_and_release(c, *pool, tokens) != nullptr);
  CHECK(c.cached_pages() == 2);
  CHECK(c.evictable_pages() == 2);
  CHECK(pool->free_pages() == 14);  // the partial page went back to the pool

  RadixCache::Match m = c.match(seq(0, 7));  // one whole page of the query
  CHECK(m.pages.size() == 1);
  CHECK(c.evictable_pages() == 1);  // the matched page is locked now (the node was split)
  CHECK(pool->ref_count(m.pages[0]) == 2);
  c.unlock(m.node);
  CHECK(pool->release(m.pages).is_ok());
  CHECK(c.evictable_pages() == 2);

  m = c.match(seq(0, 12));  // the whole cached prefix, not the third page
  CHECK(m.pages.size() == 2);
  c.unlock(m.node);
  CHECK(pool->release(m.pages).is_ok());

  auto other = seq(0, 8);
  other[5] = 99;  // differs inside the second page
  m = c.match(other);
  CHECK(m.pages.size() == 1);
  c.unlock(m.node);
  CHECK(pool->release(m.pages).is_ok());
  CHECK(c.match(seq(1, 8)).pages.empty());  // differs in the first page
  CHECK(c.match(seq(0, 3)).pages.empty());  // shorter than a page
}

TEST_CASE("radix cache: inserting a cached prefix swaps the caller's duplicate pages for the tree's") {
  auto pool = make_pool();
  RadixCache c(*pool);
  const auto a = seq(0, 8);
  cache_and_release(c, *pool, a);
  const int free_before = pool->free_pages();
  auto b = seq(0, 12);  // a's two pages and one more, computed separately
  auto pages = alloc(*pool, 3);
  const int32_t third = pages[2];
  RadixCache::Node* n = c.insert(b, pages);
  REQUIRE(n != nullptr);
  CHECK(pages[2] == third);  // the new page is the caller's own
  CHECK(pool->free_pages() == free_before - 1);  // its two duplicates went back
  CHECK(c.cached_pages() == 3);
  c.lock(n);
  CHECK(c.evictable_pages() == 0);
  for (int32_t p : pages) CHECK(pool->ref_count(p) == 2);  // the caller's and the tree's
  c.unlock(n);
  CHECK(pool->release(pages).is_ok());
  CHECK(c.evictable_pages() == 3);
}

TEST_CASE("radix cache: eviction frees least recently used unlocked leaves, never locked paths") {
  auto pool = make_pool(8);
  RadixCache c(*pool);
  auto x = seq(0, 8), y = seq(100, 8), z = seq(200, 8);
  cache_and_release(c, *pool, x);
  cache_and_release(c, *pool, y);
  cache_and_release(c, *pool, z);
  CHECK(pool->free_pages() == 2);
  // Touch x: y is now the least recently used.
  RadixCache::Match mx = c.match(x);
  c.unlock(mx.node);
  CHECK(pool->release(mx.pages).is_ok());
  // Lock z as a running request would.
  RadixCache::Match mz = c.match(z);
  REQUIRE(mz.pages.size() == 2);
  CHECK(c.evict(1) == 2);  // a whole leaf goes: y
  CHECK(c.match(y).pages.empty());
  CHECK(pool->free_pages() == 4);
  CHECK(c.evict(100) == 2);  // x; z is locked
  CHECK(c.cached_pages() == 2);
  CHECK(c.evictable_pages() == 0);
  CHECK_FALSE(c.reset());  // refused while locked
  c.unlock(mz.node);
  CHECK(pool->release(mz.pages).is_ok());
  CHECK(c.reset());
  CHECK(c.cached_pages() == 0);
  CHECK(pool->free_pages() == pool->num_pages());
}

TEST_CASE("radix cache: inner nodes become evictable leaves once their children go") {
  auto pool = make_pool(16);
  RadixCache c(*pool);
  auto base = seq(0, 8);
  auto left = base, right = base;
  for (int32_t t : seq(50, 4)) left.push_back(t);
  for (int32_t t : seq(60, 4)) right.push_back(t);
  cache_and_release(c, *pool, left);
  cache_and_release(c, *pool, right);  // splits nothing: shares base's node, adds a sibling
  CHECK(c.cached_pages() == 4);
  CHECK(c.evict(4) == 4);
  CHECK(c.cached_pages() == 0);
  CHECK(pool->free_pages() == 16);
}

TEST_CASE("radix cache: the destructor gives the tree's references back") {
  auto pool = make_pool();
  {
    RadixCache c(*pool);
    cache_and_release(c, *pool, seq(0, 16));
    CHECK(pool->free_pages() == 12);
  }
  CHECK(pool->free_pages() == 16);
}

#include "engine/radix_cache.h"

#include <algorithm>
#include <queue>
#include <unordered_map>

#include <spdlog/spdlog.h>

namespace pdctl::engine {

struct RadixCache::Node {
  Node* parent = nullptr;
  std::vector<int32_t> tokens;  // a whole number of pages
  std::vector<int32_t> pages;   // tokens.size() / page_size entries
  // Children by a hash of their first page of tokens (siblings differ somewhere in their
  // first page). A hash collision is treated as a miss, never as a match: lookups always
  // compare the tokens.
  std::unordered_map<uint64_t, std::unique_ptr<Node>> children;
  int lock_ref = 0;
  uint64_t last_access = 0;
};

namespace {

uint64_t page_hash(std::span<const int32_t> page) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a over the ids' bytes, then a final mix
  for (int32_t t : page) {
    uint32_t u = static_cast<uint32_t>(t);
    for (int b = 0; b < 4; ++b) {
      h ^= (u >> (8 * b)) & 0xffu;
      h *= 0x100000001b3ull;
    }
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  return h ^ (h >> 33);
}

void unref_or_log(kv::KvPool& pool, int32_t page) {
  if (Status st = pool.unref(page); !st.is_ok()) spdlog::error("radix cache: {}", st.to_string());
}

void ref_or_log(kv::KvPool& pool, int32_t page) {
  if (Status st = pool.ref(page); !st.is_ok()) spdlog::error("radix cache: {}", st.to_string());
}

}  // namespace

RadixCache::RadixCache(kv::KvPool& pool)
    : pool_(pool), page_size_(pool.page_size()), root_(std::make_unique<Node>()) {}

RadixCache::~RadixCache() {
  for (auto& [_, child] : root_->children) drop_subtree(child.get());
}

void RadixCache::drop_subtree(Node* node) {
  for (auto& [_, child] : node->children) drop_subtree(child.get());
  for (int32_t p : node->pages) unref_or_log(pool_, p);
}

RadixCache::Node* RadixCache::split(Node* node, size_t keep_pages) {
  // node = [head | tail] becomes mid = [head] -> node = [tail]; mid inherits the lock
  // count and age, so the accounting of locked and evictable pages does not change.
  const size_t keep_tokens = keep_pages * static_cast<size_t>(page_size_);
  Node* parent = node->parent;
  const uint64_t key = page_hash(std::span<const int32_t>(node->tokens).first(static_cast<size_t>(page_size_)));
  auto mid = std::make_unique<Node>();
  mid->parent = parent;
  mid->tokens.assign(node->tokens.begin(), node->tokens.begin() + static_cast<std::ptrdiff_t>(keep_tokens));
  mid->pages.assign(node->pages.begin(), node->pages.begin() + static_cast<std::ptrdiff_t>(keep_pages));
  mid->lock_ref = node->lock_ref;
  mid->last_access = node->last_access;
  node->tokens.erase(node->tokens.begin(), node->tokens.begin() + static_cast<std::ptrdiff_t>(keep_tokens));
  node->pages.erase(node->pages.begin(), node->pages.begin() + static_cast<std::ptrdiff_t>(keep_pages));
  std::unique_ptr<Node> self = std::move(parent->children[key]);
  self->parent = mid.get();
  const uint64_t tail_key = page_hash(std::span<const int32_t>(self->tokens).first(static_cast<size_t>(page_size_)));
  Node* out = mid.get();
  mid->children.emplace(tail_key, std::move(self));
  parent->children[key] = std::move(mid);
  return out;
}

RadixCache::Match RadixCache::match(std::span<const int32_t> tokens) {
  Match m;
  const size_t ps = static_cast<size_t>(page_size_);
  const uint64_t now = tick();
  Node* node = root_.get();
  size_t pos = 0;
  while (tokens.size() - pos >= ps) {
    auto it = node->children.find(page_hash(tokens.subspan(pos, ps)));
    if (it == node->children.end()) break;
    Node* child = it->second.get();
    size_t k = 0;
    while (k < child->pages.size() && pos + (k + 1) * ps <= tokens.size() &&
           std::equal(tokens.begin() + static_cast<std::ptrdiff_t>(pos + k * ps),
                      tokens.begin() + static_cast<std::ptrdiff_t>(pos + (k + 1) * ps),
                      child->tokens.begin() + static_cast<std::ptrdiff_t>(k * ps))) {
      ++k;
    }
    if (k == 0) break;  // a hash collision
    const bool partial = k < child->pages.size();
    if (partial) child = split(child, k);
    child->last_access = now;
    m.pages.insert(m.pages.end(), child->pages.begin(), child->pages.end());
    pos += k * ps;
    node = child;
    if (partial) break;
  }
  for (int32_t p : m.pages) ref_or_log(pool_, p);
  if (node != root_.get()) {
    m.node = node;
    lock(node);
  }
  return m;
}

RadixCache::Node* RadixCache::insert(std::span<const int32_t> tokens, std::span<int32_t> pages) {
  const size_t ps = static_cast<size_t>(page_size_);
  const size_t full = std::min(tokens.size() / ps, pages.size());
  const uint64_t now = tick();
  Node* node = root_.get();
  size_t pg = 0;
  while (pg < full) {
    const auto first_page = tokens.subspan(pg * ps, ps);
    const uint64_t key = page_hash(first_page);
    auto it = node->children.find(key);
    if (it == node->children.end()) {
      auto leaf = std::make_unique<Node>();
      leaf->parent = node;
      leaf->tokens.assign(tokens.begin() + static_cast<std::ptrdiff_t>(pg * ps),
                          tokens.begin() + static_cast<std::ptrdiff_t>(full * ps));
      leaf->pages.assign(pages.begin() + static_cast<std::ptrdiff_t>(pg), pages.begin() + static_cast<std::ptrdiff_t>(full));
      leaf->last_access = now;
      for (int32_t p : leaf->pages) ref_or_log(pool_, p);
      cached_pages_ += static_cast<int64_t>(leaf->pages.size());
      evictable_pages_ += static_cast<int64_t>(leaf->pages.size());
      node = leaf.get();
      node->parent->children.emplace(key, std::move(leaf));
      break;
    }
    Node* child = it->second.get();
    size_t k = 0;
    while (k < child->pages.size() && pg + k < full &&
           std::equal(tokens.begin() + static_cast<std::ptrdiff_t>((pg + k) * ps),
                      tokens.begin() + static_cast<std::ptrdiff_t>((pg + k + 1) * ps),
                      child->tokens.begin() + static_cast<std::ptrdiff_t>(k * ps))) {
      ++k;
    }
    if (k == 0) break;  // a hash collision: this prefix stays uncached
    if (k < child->pages.size()) child = split(child, k);
    // The tree already has these pages: the caller switches to them (same tokens, same
    // positions, so the same K/V) and lets its duplicates go.
    for (size_t i = 0; i < k; ++i) {
      int32_t& mine = pages[pg + i];
      const int32_t theirs = child->pages[i];
      if (mine == theirs) continue;
      ref_or_log(pool_, theirs);
      unref_or_log(pool_, mine);
      mine = theirs;
    }
    child->last_access = now;
    node = child;
    pg += k;
  }
  return node == root_.get() ? nullptr : node;
}

void RadixCache::lock(Node* node) {
  for (Node* n = node; n != nullptr && n != root_.get(); n = n->parent) {
    if (n->lock_ref++ == 0) evictable_pages_ -= static_cast<int64_t>(n->pages.size());
  }
}

void RadixCache::unlock(Node* node) {
  for (Node* n = node; n != nullptr && n != root_.get(); n = n->parent) {
    if (--n->lock_ref == 0) evictable_pages_ += static_cast<int64_t>(n->pages.size());
  }
}

int RadixCache::evict(int pages) {
  if (pages <= 0 || evictable_pages_ == 0) return 0;
  auto older = [](const Node* a, const Node* b) { return a->last_access > b->last_access; };
  std::priority_queue<Node*, std::vector<Node*>, decltype(older)> leaves(older);
  std::vector<Node*> stack{root_.get()};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    if (n != root_.get() && n->children.empty() && n->lock_ref == 0) leaves.push(n);
    for (auto& [_, c] : n->children) stack.push_back(c.get());
  }
  int freed = 0;
  while (freed < pages && !leaves.empty()) {
    Node* leaf = leaves.top();
    leaves.pop();
    for (int32_t p : leaf->pages) {
      if (pool_.ref_count(p) == 1) ++freed;
      unref_or_log(pool_, p);
    }
    cached_pages_ -= static_cast<int64_t>(leaf->pages.size());
    evictable_pages_ -= static_cast<int64_t>(leaf->pages.size());
    Node* parent = leaf->parent;
    parent->children.erase(page_hash(std::span<const int32_t>(leaf->tokens).first(static_cast<size_t>(page_size_))));
    if (parent != root_.get() && parent->children.empty() && parent->lock_ref == 0) leaves.push(parent);
  }
  return freed;
}

bool RadixCache::reset() {
  for (const auto& [_, child] : root_->children) {
    if (child->lock_ref > 0) return false;  // a locked node locks its whole path
  }
  for (auto& [_, child] : root_->children) drop_subtree(child.get());
  root_->children.clear();
  cached_pages_ = 0;
  evictable_pages_ = 0;
  return true;
}

}  // namespace pdctl::engine

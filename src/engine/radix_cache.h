#pragma once
// The prefix cache: a radix tree over token ids at page granularity, in the spirit of
// SGLang's RadixCache with page_size > 1. Only full pages are cached and shared: a node's
// key is a whole number of pages of token ids and its value the KV page ids holding them,
// so a request that extends a cached prefix always starts writing on a fresh page of its
// own (a shared page is never written).
//
// Ownership is plain reference counting through the pool: the tree holds one reference on
// every page it lists, and each request one on every page of its table. A request that
// uses a path locks it (lock_ref along the path to the root); unlocked nodes are
// evictable, least recently used leaves first. An unlocked node's pages are held by the
// tree alone (a request holding a cached page always locks the node that lists it), so
// evicting it frees them.
//
// Threading: engine thread only, like the pool.
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "kv/kv_pool.h"

namespace pdctl::engine {

class RadixCache {
 public:
  struct Node;  // opaque outside radix_cache.cpp

  // What match() found: a reference on each page is taken for the caller, and `node`
  // (the deepest matched node, null when nothing matched) is locked for it.
  struct Match {
    std::vector<int32_t> pages;  // one per matched page, in token order
    Node* node = nullptr;
  };

  explicit RadixCache(kv::KvPool& pool);
  ~RadixCache();  // returns the tree's references to the pool
  RadixCache(const RadixCache&) = delete;
  RadixCache& operator=(const RadixCache&) = delete;

  // The longest cached prefix of `tokens` in whole pages.
  Match match(std::span<const int32_t> tokens);

  // Caches the whole pages of `tokens` (their K/V computed and in `pages`, one page per
  // page_size tokens; a trailing partial page is ignored). Where the tree already holds a
  // page for the same tokens, the caller's page is swapped for the tree's (its reference
  // moves: the caller still holds exactly one reference per entry of `pages`, and its own
  // duplicate page is unreferenced). Returns the deepest node of the cached prefix,
  // which the caller should lock before unlocking an older lock; null when nothing was
  // cached (fewer tokens than a page).
  Node* insert(std::span<const int32_t> tokens, std::span<int32_t> pages);

  // Lock or unlock the path from `node` to the root (null: nothing).
  void lock(Node* node);
  void unlock(Node* node);

  // Frees up to `pages` pages, least recently used unlocked leaves first; returns how
  // many were freed.
  int evict(int pages);
  // Empties the tree; refused (false) while any node is locked.
  bool reset();

  int64_t cached_pages() const { return cached_pages_; }        // held by the tree
  int64_t evictable_pages() const { return evictable_pages_; }  // held by the tree alone

 private:
  Node* split(Node* node, size_t keep_pages);
  void drop_subtree(Node* node);
  uint64_t tick() { return ++clock_; }

  kv::KvPool& pool_;
  int page_size_;
  std::unique_ptr<Node> root_;
  uint64_t clock_ = 0;
  int64_t cached_pages_ = 0;
  int64_t evictable_pages_ = 0;
};

}  // namespace pdctl::engine

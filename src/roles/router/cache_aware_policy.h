#pragma once
// cache_aware (SGLang's sgl-router/src/policies/cache_aware.rs): route a text to the worker
// that most likely holds its prefix in cache, unless the load is imbalanced.
//
// For each request, with loads = requests in flight on the candidates:
//   imbalanced = (max_load - min_load) > balance_abs_threshold
//                AND max_load > min_load * balance_rel_threshold
//   imbalanced:  the least loaded candidate (the first of equals)           -> kLoadBalance
//   otherwise:   the longest prefix match in the tree; if matched / text code points
//                > cache_threshold, the worker holding it                   -> kCacheHit
//                else the candidate with the smallest tree (most free cache) -> kCacheMiss
// In every case the text is then inserted into the tree for the chosen worker.
//
// Deliberate differences from SGLang: the prefix match only walks nodes of available
// candidates (SGLang matches any tenant and falls back to the first healthy worker when that
// one is unavailable); on a node shared by several candidates the most recently used wins
// (SGLang: whichever its hash map yields first); the smallest-tree choice is among the
// candidates, ties going to the first in registry order; eviction runs from maintain(now)
// on the event loop instead of a background thread.
#include <optional>

#include "roles/router/approx_tree.h"
#include "roles/router/policy.h"

namespace pdctl::router {

class CacheAwarePolicy final : public Policy {
 public:
  explicit CacheAwarePolicy(CacheAwareConfig config) : config_(config) {}

  std::string_view name() const override { return "cache_aware"; }
  bool needs_request_text() const override { return true; }
  Selection select(std::span<const std::shared_ptr<Worker>> candidates, std::string_view text,
                   TimePoint now) override;

  void on_worker_added(const Worker& w) override { tree_.insert("", w.url()); }
  void on_worker_removed(const Worker& w) override { tree_.remove_tenant(w.url()); }
  // Evicts when --eviction-interval-secs have passed since the first call or the last
  // eviction.
  void maintain(TimePoint now) override;
  // Evicts now: every tenant down to --max-tree-size code points, LRU leaves first.
  void evict() { tree_.evict(config_.max_tree_size); }

  uint64_t cache_hits() const { return hits_; }
  uint64_t cache_misses() const { return misses_; }
  // hits / (hits + misses); 0 before any cache decision.
  double hit_rate() const;
  const ApproxTree& tree() const { return tree_; }
  const CacheAwareConfig& config() const { return config_; }

 private:
  CacheAwareConfig config_;
  ApproxTree tree_;
  std::optional<TimePoint> next_eviction_;
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
};

}  // namespace pdctl::router

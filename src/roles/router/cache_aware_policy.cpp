#include "roles/router/cache_aware_policy.h"

#include <algorithm>
#include <vector>

namespace pdctl::router {

Selection CacheAwarePolicy::select(std::span<const std::shared_ptr<Worker>> candidates,
                                   std::string_view text, TimePoint) {
  Selection sel;
  int64_t max_load = candidates[0]->in_flight();
  int64_t min_load = max_load;
  size_t least = 0;
  for (size_t i = 1; i < candidates.size(); ++i) {
    int64_t l = candidates[i]->in_flight();
    max_load = std::max(max_load, l);
    if (l < min_load) {
      min_load = l;
      least = i;
    }
  }
  const bool imbalanced =
      (max_load - min_load) > config_.balance_abs_threshold &&
      static_cast<double>(max_load) > static_cast<double>(min_load) * config_.balance_rel_threshold;

  if (imbalanced) {
    sel.index = least;
    sel.decision = Decision::kLoadBalance;
    sel.max_load = max_load;
    sel.min_load = min_load;
  } else {
    std::vector<std::string> names;
    names.reserve(candidates.size());
    for (const auto& w : candidates) names.push_back(w->url());
    ApproxTree::Match m = tree_.prefix_match(text, names);
    sel.matched_chars = m.matched_chars;
    sel.text_chars = m.text_chars;
    const double rate = m.text_chars == 0 ? 0.0
                                          : static_cast<double>(m.matched_chars) /
                                                static_cast<double>(m.text_chars);
    if (m.tenant && rate > config_.cache_threshold) {
      ++hits_;
      sel.decision = Decision::kCacheHit;
      sel.index = static_cast<size_t>(std::find(names.begin(), names.end(), *m.tenant) - names.begin());
    } else {
      ++misses_;
      sel.decision = Decision::kCacheMiss;
      size_t best = 0;
      size_t best_size = tree_.tenant_size(names[0]);
      for (size_t i = 1; i < names.size(); ++i) {
        size_t s = tree_.tenant_size(names[i]);
        if (s < best_size) {
          best = i;
          best_size = s;
        }
      }
      sel.index = best;
    }
  }
  tree_.insert(text, candidates[sel.index]->url());
  return sel;
}

void CacheAwarePolicy::maintain(TimePoint now) {
  if (!next_eviction_) {
    next_eviction_ = now + config_.eviction_interval;
    return;
  }
  if (now < *next_eviction_) return;
  evict();
  next_eviction_ = now + config_.eviction_interval;
}

double CacheAwarePolicy::hit_rate() const {
  uint64_t total = hits_ + misses_;
  return total == 0 ? 0.0 : static_cast<double>(hits_) / static_cast<double>(total);
}

}  // namespace pdctl::router

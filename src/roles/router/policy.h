#pragma once
// Load-balancing policies (SGLang's sgl-router/src/policies/): one interface; the router
// holds one instance per phase (regular, or prefill and decode in PD mode). A policy only
// ever sees the candidates the router found available (healthy, breaker allows a request:
// SGLang's get_healthy_worker_indices / is_available), in registry order.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"
#include "roles/router/router_common.h"
#include "roles/router/worker.h"

namespace pdctl::router {

// Why a worker was chosen, for the policy metrics.
enum class Decision {
  kPlain,         // random, round_robin, power_of_two
  kCacheHit,      // cache_aware: match rate above --cache-threshold
  kCacheMiss,     // cache_aware: match rate at or below it (smallest tree wins)
  kLoadBalance,   // cache_aware: the system was imbalanced; least loaded wins
};
const char* decision_name(Decision d);

struct Selection {
  size_t index = 0;  // into the candidates
  Decision decision = Decision::kPlain;
  // kCacheHit / kCacheMiss: code points matched and in the text.
  size_t matched_chars = 0;
  size_t text_chars = 0;
  // kLoadBalance: the loads that made the system imbalanced (sgl_router_max_load/min_load).
  int64_t max_load = 0;
  int64_t min_load = 0;
};

class Policy {
 public:
  virtual ~Policy() = default;

  // "random", "round_robin", "power_of_two", "cache_aware".
  virtual std::string_view name() const = 0;
  // True when select() uses the request text (only cache_aware): lets the HTTP layer skip
  // extracting it otherwise.
  virtual bool needs_request_text() const { return false; }

  // Picks one of `candidates` (never empty). `text` is the request's routing text.
  virtual Selection select(std::span<const std::shared_ptr<Worker>> candidates,
                           std::string_view text, TimePoint now) = 0;

  // Registry changes (cache_aware keeps a tenant per worker).
  virtual void on_worker_added(const Worker&) {}
  virtual void on_worker_removed(const Worker&) {}
  // Periodic upkeep; cache_aware evicts its tree every --eviction-interval-secs. Cheap
  // when nothing is due, so the HTTP layer may call it on any timer.
  virtual void maintain(TimePoint) {}
};

struct CacheAwareConfig {
  double cache_threshold = 0.3;
  int64_t balance_abs_threshold = 64;
  double balance_rel_threshold = 1.5;
  std::chrono::seconds eviction_interval{120};
  size_t max_tree_size = size_t{1} << 26;
};

// Makes a policy by its flag name; invalid_argument for an unknown name.
Result<std::unique_ptr<Policy>> make_policy(std::string_view name, const CacheAwareConfig& cache,
                                            uint64_t seed);

}  // namespace pdctl::router

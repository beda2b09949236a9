#include "roles/router/policy.h"

#include <fmt/format.h>

#include "roles/router/basic_policies.h"
#include "roles/router/cache_aware_policy.h"

namespace pdctl::router {

const char* decision_name(Decision d) {
  switch (d) {
    case Decision::kPlain: return "plain";
    case Decision::kCacheHit: return "cache_hit";
    case Decision::kCacheMiss: return "cache_miss";
    case Decision::kLoadBalance: return "load_balance";
  }
  return "unknown";
}

Result<std::unique_ptr<Policy>> make_policy(std::string_view name, const CacheAwareConfig& cache,
                                            uint64_t seed) {
  std::unique_ptr<Policy> p;
  if (name == "random") {
    p = std::make_unique<RandomPolicy>(seed);
  } else if (name == "round_robin") {
    p = std::make_unique<RoundRobinPolicy>();
  } else if (name == "power_of_two") {
    p = std::make_unique<PowerOfTwoPolicy>(seed);
  } else if (name == "cache_aware") {
    p = std::make_unique<CacheAwarePolicy>(cache);
  } else {
    return Status::invalid_argument(fmt::format(
        "policy '{}' is not one of random, round_robin, power_of_two, cache_aware", name));
  }
  return p;
}

}  // namespace pdctl::router

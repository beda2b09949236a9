#include "roles/router/basic_policies.h"

#include <random>

namespace pdctl::router {

Selection RandomPolicy::select(std::span<const std::shared_ptr<Worker>> candidates,
                               std::string_view, TimePoint) {
  std::uniform_int_distribution<size_t> pick(0, candidates.size() - 1);
  return {.index = pick(rng_)};
}

Selection RoundRobinPolicy::select(std::span<const std::shared_ptr<Worker>> candidates,
                                   std::string_view, TimePoint) {
  return {.index = static_cast<size_t>(counter_++ % candidates.size())};
}

Selection PowerOfTwoPolicy::select(std::span<const std::shared_ptr<Worker>> candidates,
                                   std::string_view, TimePoint) {
  if (candidates.size() == 1) return {.index = 0};
  // Two distinct indices, uniformly: the second is drawn from the n-1 others.
  std::uniform_int_distribution<size_t> first(0, candidates.size() - 1);
  std::uniform_int_distribution<size_t> other(0, candidates.size() - 2);
  size_t a = first(rng_);
  size_t b = other(rng_);
  if (b >= a) ++b;
  return {.index = candidates[a]->effective_load() <= candidates[b]->effective_load() ? a : b};
}

}  // namespace pdctl::router

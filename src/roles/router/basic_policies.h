#pragma once
// random, round_robin and power_of_two (SGLang's policies/random.rs, round_robin.rs,
// power_of_two.rs).
#include "roles/router/policy.h"

namespace pdctl::router {

// Uniform over the candidates.
class RandomPolicy final : public Policy {
 public:
  explicit RandomPolicy(uint64_t seed) : rng_(seed) {}
  std::string_view name() const override { return "random"; }
  Selection select(std::span<const std::shared_ptr<Worker>> candidates, std::string_view text,
                   TimePoint now) override;

 private:
  Rng rng_;
};

// A counter modulo the number of candidates: with a stable set of available workers they
// take turns; when one drops out, the others keep taking turns (SGLang's exact rule, so the
// sequence may repeat a worker once when the set changes).
class RoundRobinPolicy final : public Policy {
 public:
  std::string_view name() const override { return "round_robin"; }
  Selection select(std::span<const std::shared_ptr<Worker>> candidates, std::string_view text,
                   TimePoint now) override;

 private:
  uint64_t counter_ = 0;
};

// Two distinct random candidates; the one with the lower load wins, the first on a tie.
// Load is what the worker last reported on /get_load when known, else the router's count of
// requests in flight (Worker::effective_load).
class PowerOfTwoPolicy final : public Policy {
 public:
  explicit PowerOfTwoPolicy(uint64_t seed) : rng_(seed) {}
  std::string_view name() const override { return "power_of_two"; }
  Selection select(std::span<const std::shared_ptr<Worker>> candidates, std::string_view text,
                   TimePoint now) override;

 private:
  Rng rng_;
};

}  // namespace pdctl::router

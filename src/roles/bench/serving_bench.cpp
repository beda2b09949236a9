#include <spdlog/spdlog.h>

#include "roles/bench/bench_plan.h"
#include "roles/bench/benches.h"
#include "roles/cli.h"

namespace pdctl::roles {

// The flags are checked now, so that a mistake is reported before the driver (issue 8,
// next: the libuv request loop) would start sending.
int run_serving_bench(const BenchOptions& opts) {
  auto plan = make_serving_plan(opts);
  if (!plan) {
    spdlog::error("{}", plan.status().message());
    return kUsageExitCode;
  }
  spdlog::error("the serving benchmark's request driver is not implemented yet (target {})",
                plan->url);
  return 1;
}

}  // namespace pdctl::roles

#include <spdlog/spdlog.h>

#include "roles/bench/benches.h"

namespace pdctl::roles {

// Not built yet: lands with issue 3.
int run_offline_bench(const BenchOptions&) {
  spdlog::error("this benchmark is not implemented yet");
  return 1;
}

}  // namespace pdctl::roles

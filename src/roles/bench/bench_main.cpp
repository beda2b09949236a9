#include <spdlog/spdlog.h>

#include "roles/roles.h"

namespace pdctl::roles {

// Not built yet: the online benchmark lands with issue 8, --offline with issue 3,
// --kv-transfer with issue 6.
int run_bench(const BenchOptions&) {
  spdlog::error("`pdctl bench` is not implemented yet");
  return 1;
}

}  // namespace pdctl::roles

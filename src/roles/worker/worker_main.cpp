#include <spdlog/spdlog.h>

#include "roles/roles.h"

namespace pdctl::roles {

// Not built yet: `serve` lands with issue 5, `prefill` and `decode` with issue 6.
int run_worker(const WorkerOptions& opts) {
  spdlog::error("`pdctl {}` is not implemented yet", worker_role_name(opts.role));
  return 1;
}

}  // namespace pdctl::roles

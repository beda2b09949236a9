#include <spdlog/spdlog.h>

#include "roles/roles.h"

namespace pdctl::roles {

// Not built yet: lands with issue 7.
int run_router(const RouterOptions&) {
  spdlog::error("`pdctl router` is not implemented yet");
  return 1;
}

}  // namespace pdctl::roles

#include <spdlog/spdlog.h>

#include "roles/roles.h"

namespace pdctl::roles {

// Not built yet: lands with issue 9.
int run_up(const UpOptions&) {
  spdlog::error("`pdctl up` is not implemented yet");
  return 1;
}

}  // namespace pdctl::roles

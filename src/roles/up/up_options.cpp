#include "roles/up/up_options.h"

namespace pdctl::roles {

void add_up_flags(OptionRegistry& reg, UpOptions& o) {
  reg.add_flag("--keep-going", o.keep_going, "Keep the others running when a child dies");
  reg.add("--startup-timeout-secs", o.startup_timeout_secs, "Seconds each child may take to answer /health with 200")
      ->check(CLI::PositiveNumber);
  reg.add("--stop-grace-secs", o.stop_grace_secs, "Seconds from SIGTERM to SIGKILL when stopping children")
      ->check(CLI::PositiveNumber);
}

}  // namespace pdctl::roles

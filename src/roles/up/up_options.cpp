#include "roles/up/up_options.h"

namespace pdctl::roles {

void add_up_flags(OptionRegistry& reg, UpOptions& o) {
  reg.add_flag("--keep-going", o.keep_going, "Keep the others running when a child dies");
  reg.add("--startup-timeout-secs", o.startup_timeout_secs, "Wait this long for every child to be healthy")
      ->check(CLI::PositiveNumber);
}

}  // namespace pdctl::roles

#pragma once
// Flags of `pdctl up`: start a whole local deployment from one TOML file.
#include <string>

#include "common/options.h"

namespace pdctl::roles {

struct UpOptions {
  std::string config_file;   // the deployment ([router], [[prefill]], [[decode]], [[serve]])
  bool keep_going = false;   // a child that dies does not stop the others
  double startup_timeout_secs = 120;  // per child, from its start to its first /health 200
  double stop_grace_secs = 15;        // per stop stage, from SIGTERM to SIGKILL
};

void add_up_flags(OptionRegistry& reg, UpOptions& opts);

}  // namespace pdctl::roles

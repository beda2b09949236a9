// `pdctl up -c FILE`: a whole deployment on this host, as children of this process (see
// supervisor.h for the lifecycle and up_plan.h for how the file becomes command lines).
#include <spdlog/spdlog.h>

#include "common/options.h"
#include "net/event_loop.h"
#include "roles/cli.h"
#include "roles/roles.h"
#include "roles/up/supervisor.h"
#include "roles/up/up_plan.h"

namespace pdctl::roles {

int run_up(const UpOptions& opts) {
  if (opts.config_file.empty()) {
    spdlog::error("`pdctl up` needs the deployment: pdctl up -c FILE.toml (see config.example.toml)");
    return kUsageExitCode;
  }
  auto root = load_toml_file(opts.config_file);
  if (!root) {
    spdlog::error("{}", root.status().message());
    return kUsageExitCode;
  }
  // Everything is checked before the first child starts.
  auto plan = up::make_up_plan(*root, opts.config_file);
  if (!plan) {
    spdlog::error("{}", plan.status().message());
    return kUsageExitCode;
  }

  net::EventLoop loop;
  int exit_code;
  {
    up::Supervisor supervisor(loop, std::move(*plan), opts);
    supervisor.start();
    loop.run();
    exit_code = supervisor.exit_code();
    if (Status closed = loop.close(); !closed.is_ok()) {
      spdlog::error("{}", closed.message());
      if (exit_code == 0) exit_code = 1;
    }
  }
  return exit_code;
}

}  // namespace pdctl::roles

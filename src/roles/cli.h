#pragma once
// The command line: `pdctl [--log-level L] [--config FILE] ROLE [flags]`. Builds every
// role's flags, overlays the config file's [role] table (default < file < flag), and
// hands the typed options to the role.
#include <iosfwd>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "roles/roles.h"

namespace pdctl::roles {

// Exit code of every usage error (unknown flag, bad value, bad config key).
inline constexpr int kUsageExitCode = 2;

class Cli {
 public:
  Cli();
  Cli(const Cli&) = delete;
  Cli& operator=(const Cli&) = delete;

  // Parses the arguments (argv[0] first). Returns an exit code when the program should
  // stop now (--help, --version, --print-config or an error, reported on `out`/`err`),
  // or nullopt when run() should follow.
  std::optional<int> parse(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err);

  // Runs the chosen role.
  int run();

  const std::string& role() const { return role_; }
  const std::string& log_level() const { return log_level_; }

  WorkerOptions serve, prefill, decode;
  RouterOptions router;
  BenchOptions bench;
  UpOptions up;

 private:
  struct Sub {
    CLI::App* app;
    std::unique_ptr<OptionRegistry> reg;
  };
  CLI::App app_;
  std::map<std::string, Sub> subs_;
  std::string role_;
  std::string log_level_ = "info";
  std::string config_file_;
  bool print_config_ = false;
};

// The roles a config file may have tables for.
const std::vector<std::string>& config_sections();

}  // namespace pdctl::roles

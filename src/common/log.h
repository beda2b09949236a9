#pragma once
// Levelled, timestamped, role-tagged log lines on stderr (spdlog). Code logs with
// spdlog::info/warn/... directly; this header only sets the process-wide format.
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

#include "common/status.h"

namespace pdctl::log {

// Valid names: trace, debug, info, warning (or warn), error, critical, off.
Result<spdlog::level::level_enum> parse_level(std::string_view name);

// Installs the stderr logger: "2026-11-27 09:06:32.123 INFO  [decode] message".
void init(std::string_view role, spdlog::level::level_enum level);

// Changes only the role tag (after the subcommand is known).
void set_role(std::string_view role);

}  // namespace pdctl::log

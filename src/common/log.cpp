#include "common/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace pdctl::log {

Result<spdlog::level::level_enum> parse_level(std::string_view name) {
  using spdlog::level::level_enum;
  if (name == "trace") return level_enum::trace;
  if (name == "debug") return level_enum::debug;
  if (name == "info") return level_enum::info;
  if (name == "warning" || name == "warn") return level_enum::warn;
  if (name == "error") return level_enum::err;
  if (name == "critical") return level_enum::critical;
  if (name == "off") return level_enum::off;
  return Status::invalid_argument("unknown log level '" + std::string(name) +
                                  "' (trace, debug, info, warning, error, critical, off)");
}

static std::string pattern_for(std::string_view role) {
  return "%Y-%m-%d %H:%M:%S.%e %^%-5!l%$ [" + std::string(role) + "] %v";
}

void init(std::string_view role, spdlog::level::level_enum level) {
  auto logger = spdlog::stderr_color_mt("pdctl");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern(pattern_for(role));
  spdlog::set_level(level);
  spdlog::flush_on(spdlog::level::warn);
}

void set_role(std::string_view role) { spdlog::set_pattern(pattern_for(role)); }

}  // namespace pdctl::log

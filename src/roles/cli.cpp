#include "roles/cli.h"

#include <iostream>
#include <sstream>

#include <fmt/format.h>

#include "common/build_info.h"
#include "common/log.h"

namespace pdctl::roles {

const std::vector<std::string>& config_sections() {
  static const std::vector<std::string> k = {"router", "prefill", "decode", "serve", "bench", "up"};
  return k;
}

static std::string version_text() {
  return fmt::format("pdctl {} ({}, {}, CUDA backend {})", build::kVersion, build::kBuildType,
                     build::kCompiler, build::kHaveCuda ? "built" : "not built");
}

Cli::Cli() : app_("pdctl: LLM serving with prefill/decode disaggregation", "pdctl") {
  app_.set_version_flag("--version", version_text());
  app_.require_subcommand(1);
  app_.add_option("--log-level", log_level_, "trace, debug, info, warning, error, critical")
      ->check(CLI::IsMember({"trace", "debug", "info", "warning", "warn", "error", "critical", "off"}))
      ->capture_default_str();
  app_.add_option("-c,--config", config_file_,
                  "TOML file: flags of a role in its [role] table; for `up`, the deployment");
  app_.add_flag("--print-config", print_config_, "Print the effective configuration as TOML and exit");

  serve.role = WorkerRole::kServe;
  prefill.role = WorkerRole::kPrefill;
  decode.role = WorkerRole::kDecode;
  struct Spec {
    const char* name;
    const char* help;
  };
  const Spec specs[] = {
      {"router", "Gateway: OpenAI/SGLang API, picks a prefill/decode pair (or a worker) per request"},
      {"prefill", "Prefill worker: runs prompts, writes their KV into decode workers over UCX"},
      {"decode", "Decode worker: receives KV over UCX, generates tokens"},
      {"serve", "Colocated worker: prefill and decode in one process"},
      {"bench", "Benchmarks: serving (as sglang.bench_serving), --offline engine, --kv-transfer"},
      {"up", "Start a whole local deployment from one TOML file (-c FILE)"},
  };
  for (const Spec& s : specs) {
    CLI::App* sub = app_.add_subcommand(s.name, s.help);
    sub->fallthrough();  // global flags may follow the role
    auto reg = std::make_unique<OptionRegistry>(sub);
    const std::string n = s.name;
    if (n == "serve") add_worker_flags(*reg, serve);
    if (n == "prefill") add_worker_flags(*reg, prefill);
    if (n == "decode") add_worker_flags(*reg, decode);
    if (n == "router") add_router_flags(*reg, router);
    if (n == "bench") add_bench_flags(*reg, bench);
    if (n == "up") add_up_flags(*reg, up);
    subs_.emplace(n, Sub{sub, std::move(reg)});
  }
}

std::optional<int> Cli::parse(const std::vector<std::string>& argv, std::ostream& out,
                              std::ostream& err) {
  std::vector<const char*> cargv;
  for (const auto& a : argv) cargv.push_back(a.c_str());
  try {
    app_.parse(static_cast<int>(cargv.size()), cargv.data());
  } catch (const CLI::ParseError& e) {
    int rc = app_.exit(e, out, err);
    return rc == 0 ? 0 : kUsageExitCode;
  }

  for (auto& [name, sub] : subs_) {
    if (sub.app->parsed()) role_ = name;
  }
  Sub& sub = subs_.at(role_);

  if (!config_file_.empty() && role_ != "up") {
    auto root = load_toml_file(config_file_);
    if (!root) {
      err << "error: " << root.status().message() << "\n";
      return kUsageExitCode;
    }
    for (const auto& [key, node] : *root) {
      const std::string k(key.str());
      bool known = false;
      for (const auto& s : config_sections()) known |= (s == k);
      if (!known) {
        err << "error: " << where(node, config_file_) << ": unknown section [" << k
            << "] (expected one of router, prefill, decode, serve, bench, up)\n";
        return kUsageExitCode;
      }
    }
    auto table = role_table(*root, role_, config_file_);
    if (!table) {
      err << "error: " << table.status().message() << "\n";
      return kUsageExitCode;
    }
    Status st = *table ? sub.reg->apply_toml(**table, config_file_) : Status::ok();
    if (!st.is_ok()) {
      err << "error: " << st.message() << "\n";
      return kUsageExitCode;
    }
  }
  if (role_ == "up") up.config_file = config_file_;
  if (role_ == "router") {
    Status st = finalize_router_options(router);
    if (!st.is_ok()) {
      err << "error: " << st.message() << "\n";
      return kUsageExitCode;
    }
  }

  if (print_config_) {
    toml::table doc;
    doc.insert_or_assign(role_, sub.reg->effective());
    out << toml::toml_formatter{doc, toml::toml_formatter::default_flags |
                                         toml::format_flags::relaxed_float_precision}
        << "\n";
    return 0;
  }
  return std::nullopt;
}

int Cli::run() {
  auto level = log::parse_level(log_level_);
  log::init(role_, level ? *level : spdlog::level::info);
  try {
    if (role_ == "serve") return run_worker(serve);
    if (role_ == "prefill") return run_worker(prefill);
    if (role_ == "decode") return run_worker(decode);
    if (role_ == "router") return run_router(router);
    if (role_ == "bench") return run_bench(bench);
    if (role_ == "up") return run_up(up);
  } catch (const std::exception& e) {
    // Start-up errors only: roles return error values once running.
    spdlog::critical("{}", e.what());
    return 1;
  }
  spdlog::critical("unknown role '{}'", role_);
  return kUsageExitCode;
}

}  // namespace pdctl::roles

#include "roles/up/up_plan.h"

#include <algorithm>
#include <charconv>
#include <map>
#include <set>

#include <fmt/format.h>

#include "common/options.h"
#include "roles/router/router_options.h"
#include "roles/worker/worker_options.h"

namespace pdctl::roles::up {
namespace {

constexpr int kMaxCpu = 1023;

std::string normalized_key(std::string_view raw) {
  std::string key(raw);
  std::replace(key.begin(), key.end(), '_', '-');
  return key;
}

bool is_up_key(std::string_view key) { return key == kNameKey || key == kCpusKey || key == kLogLevelKey; }

std::string format_number(double v) { return fmt::format("{}", v); }  // shortest exact form

// The string CLI11 reads back as the same value.
std::optional<std::string> scalar_arg(const toml::node& n) {
  if (auto s = n.as_string()) return s->get();
  if (auto i = n.as_integer()) return std::to_string(i->get());
  if (auto f = n.as_floating_point()) return format_number(f->get());
  if (auto b = n.as_boolean()) return b->get() ? "true" : "false";
  return std::nullopt;
}

// One entry's keys as flags: `--key=value`, `--key=true|false`, and `--key A B` for arrays
// (each element its own argument, as on a command line).
Result<std::vector<std::string>> entry_flags(const toml::table& t, std::string_view file) {
  std::vector<std::string> out;
  for (const auto& [raw, node] : t) {
    const std::string key = normalized_key(raw.str());
    if (is_up_key(key)) continue;
    if (const toml::array* arr = node.as_array()) {
      if (arr->empty()) continue;  // an empty array keeps the default, as in a role's own table
      out.push_back("--" + key);
      for (const toml::node& el : *arr) {
        auto s = scalar_arg(el);
        if (!s) return Status::invalid_argument(fmt::format("{}: key '{}': array elements must be scalars", where(el, file), key));
        out.push_back(*s);
      }
      continue;
    }
    auto s = scalar_arg(node);
    if (!s) return Status::invalid_argument(fmt::format("{}: key '{}' must be a scalar or an array", where(node, file), key));
    out.push_back("--" + key + "=" + *s);
  }
  return out;
}

std::string connect_host(const std::string& host) {
  if (host.empty() || host == "0.0.0.0") return "127.0.0.1";
  if (host == "::" || host == "[::]") return "::1";
  return host;
}

std::string http_url(const std::string& host, int port) {
  const std::string h = connect_host(host);
  if (h.find(':') != std::string::npos && h.front() != '[') return fmt::format("http://[{}]:{}", h, port);
  return fmt::format("http://{}:{}", h, port);
}

// The [[role]] entries of a section: an array of tables, or one [role] table.
Result<std::vector<const toml::table*>> entries_of(const toml::table& root, std::string_view role, std::string_view file) {
  std::vector<const toml::table*> out;
  const toml::node* node = root.get(role);
  if (!node) return out;
  if (const toml::table* t = node->as_table()) {
    out.push_back(t);
    return out;
  }
  if (const toml::array* arr = node->as_array()) {
    for (const toml::node& el : *arr) {
      const toml::table* t = el.as_table();
      if (!t) return Status::invalid_argument(fmt::format("{}: [[{}]] entries must be tables", where(el, file), role));
      out.push_back(t);
    }
    return out;
  }
  return Status::invalid_argument(fmt::format("{}: '{}' must be a table", where(*node, file), role));
}

// The keys `up` reads itself, registered beside the role's flags so that one apply_toml
// checks the whole entry (unknown keys, types, ranges) with file:line messages.
struct UpKeys {
  std::string name;
  std::string cpus;
  std::string log_level;
  void add_to(OptionRegistry& reg) {
    reg.add("--name", name, "`up`: the child's name in logs");
    reg.add("--cpus", cpus, "`up`: CPU list of the child");
    reg.add("--log-level", log_level, "`up`: the child's log level")
        ->check(CLI::IsMember({"", "trace", "debug", "info", "warning", "warn", "error", "critical", "off"}));
  }
};

struct Listener {
  int port;
  std::string what;  // "prefill-0 (config.toml:19) port"
};

Status check_ports(const std::vector<Listener>& listeners) {
  std::map<int, const Listener*> seen;
  for (const Listener& l : listeners) {
    auto [it, inserted] = seen.emplace(l.port, &l);
    if (!inserted) {
      return Status::invalid_argument(fmt::format("port {} is used twice: {} and {}; give each entry its own port",
                                                  l.port, it->second->what, l.what));
    }
  }
  return Status::ok();
}

Status fill_common(ChildSpec& spec, const UpKeys& keys, std::string_view role, size_t index) {
  spec.role = std::string(role);
  spec.name = keys.name.empty() ? (role == "router" ? std::string("router") : fmt::format("{}-{}", role, index))
                                : keys.name;
  if (!keys.cpus.empty()) {
    auto cpus = parse_cpu_list(keys.cpus);
    if (!cpus) return std::move(cpus).status().with_context(fmt::format("{}: key 'cpus'", spec.where));
    spec.cpus = std::move(*cpus);
  }
  if (!keys.log_level.empty()) {
    spec.args.push_back("--log-level");
    spec.args.push_back(keys.log_level);
  }
  spec.args.push_back(spec.role);
  return Status::ok();
}

}  // namespace

Result<std::vector<int>> parse_cpu_list(std::string_view text) {
  std::set<int> cpus;
  auto parse_int = [](std::string_view s) -> std::optional<int> {
    int v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || v < 0 || v > kMaxCpu) return std::nullopt;
    return v;
  };
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string_view::npos) comma = text.size();
    std::string_view item = text.substr(start, comma - start);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    const size_t dash = item.find('-');
    auto lo = parse_int(item.substr(0, dash));
    auto hi = dash == std::string_view::npos ? lo : parse_int(item.substr(dash + 1));
    if (!lo || !hi || *hi < *lo) {
      return Status::invalid_argument(fmt::format(
          "'{}' is not a CPU list (like \"0,2-3\"; CPUs 0-{}): bad item '{}'", text, kMaxCpu, item));
    }
    for (int c = *lo; c <= *hi; ++c) cpus.insert(c);
    start = comma + 1;
  }
  return std::vector<int>(cpus.begin(), cpus.end());
}

Result<UpPlan> make_up_plan(const toml::table& root, std::string_view file) {
  for (const auto& [key, node] : root) {
    const std::string k(key.str());
    if (k == "router" || k == "prefill" || k == "decode" || k == "serve" || k == "bench") continue;
    if (k == "up") {
      return Status::invalid_argument(fmt::format(
          "{}: [up] is not read from the file; give `pdctl up` its flags on the command line", where(node, file)));
    }
    return Status::invalid_argument(fmt::format(
        "{}: unknown section [{}] (a deployment has [router], [[prefill]], [[decode]], [[serve]])", where(node, file), k));
  }

  UpPlan plan;
  std::vector<Listener> listeners;
  std::set<std::string> names;
  auto add_names = [&](const ChildSpec& spec) -> Status {
    if (!names.insert(spec.name).second) {
      return Status::invalid_argument(fmt::format("{}: two entries are named '{}'", spec.where, spec.name));
    }
    return Status::ok();
  };

  // Workers. The router's derived flags: `--prefill URL BOOTSTRAP_PORT...`, `--decode URL...`,
  // `--worker-urls URL...`.
  std::vector<std::string> prefill_args, decode_urls, serve_urls;
  for (std::string_view role : {"prefill", "decode", "serve"}) {
    PDCTL_ASSIGN_OR_RETURN(auto entries, entries_of(root, role, file));
    for (size_t i = 0; i < entries.size(); ++i) {
      const toml::table& t = *entries[i];
      CLI::App app("", std::string(role));
      OptionRegistry reg(&app);
      WorkerOptions opts;
      UpKeys keys;
      keys.add_to(reg);
      add_worker_flags(reg, opts);
      PDCTL_RETURN_IF_ERROR(reg.apply_toml(t, file));

      ChildSpec spec;
      spec.where = where(t, file);
      PDCTL_RETURN_IF_ERROR(fill_common(spec, keys, role, i));
      PDCTL_RETURN_IF_ERROR(add_names(spec));
      PDCTL_ASSIGN_OR_RETURN(auto flags, entry_flags(t, file));
      spec.args.insert(spec.args.end(), flags.begin(), flags.end());
      spec.url = http_url(opts.host, opts.port);
      spec.health_url = spec.url + "/health";
      listeners.push_back({opts.port, fmt::format("{} ({}) port", spec.name, spec.where)});
      if (role == "prefill") {
        listeners.push_back({opts.disaggregation_bootstrap_port,
                             fmt::format("{} ({}) disaggregation-bootstrap-port", spec.name, spec.where)});
        prefill_args.push_back(spec.url);
        prefill_args.push_back(std::to_string(opts.disaggregation_bootstrap_port));
        spec.stop_stage = StopStage::kPrefillAndServe;
      } else if (role == "decode") {
        decode_urls.push_back(spec.url);
        spec.stop_stage = StopStage::kDecode;
      } else {
        serve_urls.push_back(spec.url);
        spec.stop_stage = StopStage::kPrefillAndServe;
      }
      plan.children.push_back(std::move(spec));
    }
  }

  PDCTL_ASSIGN_OR_RETURN(auto routers, entries_of(root, "router", file));
  if (routers.size() > 1) {
    return Status::invalid_argument(fmt::format("{}: a deployment has one [router]", where(*routers[1], file)));
  }
  if (!routers.empty()) {
    const toml::table& t = *routers[0];
    CLI::App app("", "router");
    OptionRegistry reg(&app);
    RouterOptions opts;
    UpKeys keys;
    keys.add_to(reg);
    add_router_flags(reg, opts);
    PDCTL_RETURN_IF_ERROR(reg.apply_toml(t, file));

    ChildSpec spec;
    spec.where = where(t, file);
    PDCTL_RETURN_IF_ERROR(fill_common(spec, keys, "router", 0));
    PDCTL_RETURN_IF_ERROR(add_names(spec));
    PDCTL_ASSIGN_OR_RETURN(auto flags, entry_flags(t, file));
    spec.args.insert(spec.args.end(), flags.begin(), flags.end());

    const bool names_workers = !opts.worker_urls.empty() || !opts.prefill_args.empty() || !opts.decode_urls.empty();
    if (!names_workers) {
      if (!prefill_args.empty() || !decode_urls.empty()) {
        opts.pd_disaggregation = true;
        opts.prefill_args = prefill_args;
        opts.decode_urls = decode_urls;
        spec.args.push_back("--pd-disaggregation=true");
        if (!prefill_args.empty()) {
          spec.args.push_back("--prefill");
          spec.args.insert(spec.args.end(), prefill_args.begin(), prefill_args.end());
        }
        if (!decode_urls.empty()) {
          spec.args.push_back("--decode");
          spec.args.insert(spec.args.end(), decode_urls.begin(), decode_urls.end());
        }
      } else if (!serve_urls.empty()) {
        opts.worker_urls = serve_urls;
        spec.args.push_back("--worker-urls");
        spec.args.insert(spec.args.end(), serve_urls.begin(), serve_urls.end());
      }
    }
    if (Status st = finalize_router_options(opts); !st.is_ok()) {
      return std::move(st).with_context(fmt::format("{}: [router]", spec.where));
    }
    spec.url = http_url(opts.host, opts.port);
    spec.health_url = spec.url + "/health";
    spec.stop_stage = StopStage::kRouter;
    listeners.push_back({opts.port, fmt::format("{} ({}) port", spec.name, spec.where)});
    plan.entry_url = spec.url;
    plan.children.push_back(std::move(spec));
  } else if (plan.children.size() == 1) {
    plan.entry_url = plan.children[0].url;
  }

  if (plan.children.empty()) {
    return Status::invalid_argument(fmt::format(
        "{}: nothing to start (no [router], [[prefill]], [[decode]] or [[serve]] table)", file));
  }
  PDCTL_RETURN_IF_ERROR(check_ports(listeners));
  return plan;
}

}  // namespace pdctl::roles::up

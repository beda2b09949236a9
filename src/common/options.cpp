#include "common/options.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include <fmt/format.h>

namespace pdctl {
namespace {

std::string toml_key_of(const CLI::Option* opt) {
  // The first long name ("--model-path,--model" gives "model-path").
  for (const std::string& n : opt->get_lnames()) return n;
  return opt->get_single_name();
}

const char* kind_name(TomlKind kind) {
  switch (kind) {
    case TomlKind::kBool: return "a boolean";
    case TomlKind::kInt: return "an integer";
    case TomlKind::kFloat: return "a number";
    case TomlKind::kString: return "a string";
    case TomlKind::kList: return "an array (or a string)";
  }
  return "a value";
}

const char* node_type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a floating-point number";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::array: return "an array";
    case toml::node_type::table: return "a table";
    default: return "a date or time";
  }
}

std::string format_double(double v) {
  std::ostringstream os;
  os.precision(17);
  os << v;
  return os.str();
}

// Converts one scalar to the string CLI11 would have read on the command line.
std::optional<std::string> scalar_to_string(const toml::node& n) {
  if (auto s = n.as_string()) return s->get();
  if (auto i = n.as_integer()) return std::to_string(i->get());
  if (auto f = n.as_floating_point()) return format_double(f->get());
  if (auto b = n.as_boolean()) return b->get() ? "true" : "false";
  return std::nullopt;
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

std::string where(const toml::node& node, std::string_view file) {
  const auto& src = node.source();
  return fmt::format("{}:{}", file, src.begin.line);
}

CLI::Option* OptionRegistry::add_list(const std::string& names, std::vector<std::string>& target,
                                      const std::string& help) {
  CLI::Option* opt = app_->add_option(names, target, help);
  remember(opt, TomlKind::kList, [&target](toml::table& t, const std::string& key) {
    toml::array arr;
    for (const auto& s : target) arr.push_back(s);
    t.insert_or_assign(key, std::move(arr));
  });
  return opt;
}

CLI::Option* OptionRegistry::add_flag(const std::string& names, bool& target,
                                      const std::string& help) {
  CLI::Option* opt = app_->add_flag(names, target, help);
  remember(opt, TomlKind::kBool,
           [&target](toml::table& t, const std::string& key) { t.insert_or_assign(key, target); });
  return opt;
}

void OptionRegistry::remember(CLI::Option* opt, TomlKind kind, Emit emit) {
  entries_.emplace(toml_key_of(opt), Entry{opt, kind, std::move(emit)});
}

Status OptionRegistry::apply_toml(const toml::table& table, std::string_view file) {
  for (const auto& [raw_key, node] : table) {
    std::string key(raw_key.str());
    std::replace(key.begin(), key.end(), '_', '-');
    const std::string at = where(node, file);
    auto it = entries_.find(key);
    if (it == entries_.end()) {
      std::string hint;
      size_t best = 3;
      for (const auto& [name, e] : entries_) {
        size_t d = edit_distance(key, name);
        if (d < best) {
          best = d;
          hint = fmt::format(" (did you mean '{}'?)", name);
        }
      }
      return Status::invalid_argument(fmt::format("{}: unknown key '{}' in [{}]{}", at,
                                                  std::string(raw_key.str()), app_->get_name(),
                                                  hint));
    }
    Entry& e = it->second;
    if (e.option->count() > 0) continue;  // the command line wins

    std::vector<std::string> values;
    bool type_ok = true;
    switch (e.kind) {
      case TomlKind::kBool:
        type_ok = node.is_boolean();
        break;
      case TomlKind::kInt:
        type_ok = node.is_integer();
        break;
      case TomlKind::kFloat:
        type_ok = node.is_integer() || node.is_floating_point();
        break;
      case TomlKind::kString:
        type_ok = node.is_string();
        break;
      case TomlKind::kList:
        if (const toml::array* arr = node.as_array()) {
          for (const toml::node& el : *arr) {
            auto s = scalar_to_string(el);
            if (!s || el.is_boolean()) {
              return Status::invalid_argument(fmt::format(
                  "{}: key '{}': array elements must be strings or integers, got {}",
                  where(el, file), key, node_type_name(el)));
            }
            values.push_back(*s);
          }
        } else {
          type_ok = node.is_string();
        }
        break;
    }
    if (!type_ok) {
      return Status::invalid_argument(fmt::format("{}: key '{}' must be {}, got {}", at, key,
                                                  kind_name(e.kind), node_type_name(node)));
    }
    if (values.empty() && e.kind != TomlKind::kList) values.push_back(*scalar_to_string(node));
    if (values.empty() && node.is_string()) values.push_back(*scalar_to_string(node));
    if (e.kind == TomlKind::kList && values.empty()) continue;  // an empty array: keep default

    e.option->clear();
    e.option->add_result(values);
    try {
      e.option->run_callback();
    } catch (const CLI::Error& err) {
      return Status::invalid_argument(
          fmt::format("{}: key '{}': {}", at, key, std::string(err.what())));
    }
  }
  return Status::ok();
}

toml::table OptionRegistry::effective() const {
  toml::table t;
  for (const auto& [key, e] : entries_) e.emit(t, key);
  return t;
}

Result<toml::table> load_toml_file(const std::string& path) {
  try {
    return toml::parse_file(path);
  } catch (const toml::parse_error& err) {
    const auto& src = err.source();
    return Status::invalid_argument(fmt::format("{}:{}:{}: {}", path, src.begin.line,
                                                src.begin.column, std::string(err.description())));
  } catch (const std::exception& err) {
    return Status::io(fmt::format("{}: {}", path, err.what()));
  }
}

Result<const toml::table*> role_table(const toml::table& root, std::string_view role,
                                      std::string_view file) {
  const toml::node* node = root.get(role);
  if (!node) return static_cast<const toml::table*>(nullptr);
  if (const toml::table* t = node->as_table()) return t;
  if (const toml::array* arr = node->as_array()) {
    if (arr->size() == 1 && arr->get(0)->is_table()) return arr->get(0)->as_table();
    return Status::invalid_argument(fmt::format(
        "{}: [[{}]] has {} entries; `pdctl {}` takes one (start several with `pdctl up`)",
        where(*node, file), role, arr->size(), role));
  }
  return Status::invalid_argument(
      fmt::format("{}: '{}' must be a table, got {}", where(*node, file), role,
                  node_type_name(*node)));
}

}  // namespace pdctl

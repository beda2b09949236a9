#pragma once
// One registry per subcommand binds each CLI11 flag to a typed field and remembers its
// TOML type, so that the same names work on the command line and in a config file:
//   default < value in the file's [role] table < command-line flag.
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <CLI/CLI.hpp>
#include <toml++/toml.h>

#include "common/status.h"

namespace pdctl {

// What a flag's value looks like in TOML.
enum class TomlKind { kBool, kInt, kFloat, kString, kList };

class OptionRegistry {
 public:
  explicit OptionRegistry(CLI::App* app) : app_(app) {}
  OptionRegistry(const OptionRegistry&) = delete;
  OptionRegistry& operator=(const OptionRegistry&) = delete;

  CLI::App* app() const { return app_; }

  // A flag with one value (string, integer, floating point, or std::optional of these).
  template <class T>
  CLI::Option* add(const std::string& names, T& target, const std::string& help) {
    CLI::Option* opt = app_->add_option(names, target, help);
    if constexpr (!is_optional<T>::value) opt->capture_default_str();
    remember(opt, kind_of<T>(), [&target](toml::table& t, const std::string& key) {
      insert(t, key, target);
    });
    return opt;
  }

  // A flag that takes several values: `--worker-urls A B C`.
  CLI::Option* add_list(const std::string& names, std::vector<std::string>& target,
                        const std::string& help);

  // A boolean switch: present means true; in TOML `name = true|false`.
  CLI::Option* add_flag(const std::string& names, bool& target, const std::string& help);

  // Applies a TOML table (the [role] section of --config FILE) to every flag that the
  // command line did not set. Names are the long flag names without dashes
  // ("model-path"; "model_path" is accepted too). Errors name the key and file:line.
  Status apply_toml(const toml::table& table, std::string_view file);

  // The effective configuration, as a TOML table (for --print-config).
  toml::table effective() const;

 private:
  using Emit = std::function<void(toml::table&, const std::string&)>;
  struct Entry {
    CLI::Option* option;
    TomlKind kind;
    Emit emit;  // writes the current value into a table, for --print-config
  };
  template <class T> struct is_optional : std::false_type {};
  template <class T> struct is_optional<std::optional<T>> : std::true_type {};

  template <class T>
  static constexpr TomlKind kind_of() {
    if constexpr (is_optional<T>::value) {
      return kind_of<typename T::value_type>();
    } else if constexpr (std::is_same_v<T, bool>) {
      return TomlKind::kBool;
    } else if constexpr (std::is_integral_v<T>) {
      return TomlKind::kInt;
    } else if constexpr (std::is_floating_point_v<T>) {
      return TomlKind::kFloat;
    } else if constexpr (std::is_same_v<T, std::string>) {
      return TomlKind::kString;
    } else {
      static_assert(sizeof(T) == 0, "unsupported option type");
    }
  }

  // An unset std::optional renders as nothing.
  template <class T>
  static void insert(toml::table& t, const std::string& key, const T& v) {
    if constexpr (is_optional<T>::value) {
      if (v) insert(t, key, *v);
    } else if constexpr (std::is_same_v<T, bool> || std::is_same_v<T, std::string>) {
      t.insert_or_assign(key, v);
    } else if constexpr (std::is_integral_v<T>) {
      t.insert_or_assign(key, static_cast<int64_t>(v));
    } else {
      t.insert_or_assign(key, static_cast<double>(v));
    }
  }

  void remember(CLI::Option* opt, TomlKind kind, Emit emit);

  CLI::App* app_;
  std::map<std::string, Entry> entries_;  // by TOML key (long name without dashes)
};

// Reads a TOML file; a syntax error names file:line:column.
Result<toml::table> load_toml_file(const std::string& path);

// Finds the table for `role` in a config file: `[role]`, or `[[role]]` with exactly one
// entry; nullptr when absent. Points into `root` (copies would lose line numbers).
Result<const toml::table*> role_table(const toml::table& root, std::string_view role,
                               std::string_view file);

// "file:line" of a node, for error messages.
std::string where(const toml::node& node, std::string_view file);

}  // namespace pdctl

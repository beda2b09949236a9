#pragma once
// Small checked accessors over nlohmann::json for the tokenizer loaders: a missing key or a
// value of the wrong type becomes a Status naming the JSON path, never an exception.
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace pdctl::engine::tok {

using json = nlohmann::json;

inline const json* member(const json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

inline std::string path_of(const std::string& where, const char* key) {
  return where.empty() ? std::string(key) : where + "." + key;
}

inline Result<std::string> get_string(const json& obj, const char* key, const std::string& where) {
  const json* v = member(obj, key);
  if (v == nullptr) return Status::corrupt(path_of(where, key) + " is missing");
  if (!v->is_string()) return Status::corrupt(path_of(where, key) + " is not a string");
  return v->get<std::string>();
}

inline Result<std::string> get_string_or(const json& obj, const char* key, const std::string& where,
                                         std::string fallback) {
  const json* v = member(obj, key);
  if (v == nullptr) return fallback;
  if (!v->is_string()) return Status::corrupt(path_of(where, key) + " is not a string");
  return v->get<std::string>();
}

inline Result<bool> get_bool_or(const json& obj, const char* key, const std::string& where,
                                bool fallback) {
  const json* v = member(obj, key);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) return Status::corrupt(path_of(where, key) + " is not a boolean");
  return v->get<bool>();
}

inline Result<int64_t> get_int_or(const json& obj, const char* key, const std::string& where,
                                  int64_t fallback) {
  const json* v = member(obj, key);
  if (v == nullptr) return fallback;
  if (!v->is_number_integer()) return Status::corrupt(path_of(where, key) + " is not an integer");
  return v->get<int64_t>();
}

// A token given as a string or as an AddedToken object {"content": ...}.
inline std::optional<std::string> token_content(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object()) {
    auto it = v.find("content");
    if (it != v.end() && it->is_string()) return it->get<std::string>();
  }
  return std::nullopt;
}

}  // namespace pdctl::engine::tok

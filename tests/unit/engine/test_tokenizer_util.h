#pragma once
// Shared by the tokenizer tests: the reference files in ../shared, loaded once per process
// (the big tokenizer.json files take a while to parse under the sanitizers).
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "engine/tokenizer.h"

namespace tokenizer_test {

inline std::string shared_path(const std::string& rel) { return std::string(PDCTL_SHARED_DIR) + "/" + rel; }

inline bool have(const std::string& rel) { return std::filesystem::exists(shared_path(rel)); }

// The tokenizer in ../shared/tokenizers/<name>/, or null (with a message) when it is absent.
inline const pdctl::engine::Tokenizer* shared_tokenizer(const std::string& name) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<pdctl::engine::Tokenizer>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(name);
  if (it != cache.end()) return it->second.get();
  const std::string dir = shared_path("tokenizers/" + name);
  std::unique_ptr<pdctl::engine::Tokenizer> tok;
  if (!std::filesystem::exists(dir + "/tokenizer.json")) {
    MESSAGE("skipped: " << dir << "/tokenizer.json is absent");
  } else {
    auto r = pdctl::engine::Tokenizer::load(dir);
    REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
    tok = std::make_unique<pdctl::engine::Tokenizer>(std::move(r).value());
  }
  return cache.emplace(name, std::move(tok)).first->second.get();
}

inline nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return nlohmann::json::parse(ss.str());
}

inline const char* const kTokenizers[] = {"llama3", "qwen3", "spm-bytefallback-32k"};

}  // namespace tokenizer_test

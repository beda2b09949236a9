#include "roles/worker/api_fields.h"

#include <cmath>
#include <limits>

#include <fmt/format.h>

namespace pdctl::worker {

using nlohmann::json;

namespace {

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "a list";
    case json::value_t::object: return "an object";
    case json::value_t::binary:
    case json::value_t::discarded: return "invalid";
  }
  return "invalid";
}

bool is_empty_value(const json& v) {
  if (v.is_null()) return true;
  if (v.is_boolean()) return !v.get<bool>();
  if (v.is_number()) return v.get<double>() == 0;
  if (v.is_string() || v.is_array() || v.is_object()) return v.empty();
  return false;
}

// An integer value of `v`, also from an integral float; nullopt otherwise.
std::optional<int64_t> as_integer(const json& v) {
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) return static_cast<int64_t>(d);
  }
  return std::nullopt;
}

}  // namespace

FieldReader::FieldReader(const json& obj, std::string where) : obj_(obj), where_(std::move(where)) {}

const json* FieldReader::raw(std::string_view key) const {
  if (!obj_.is_object()) return nullptr;
  auto it = obj_.find(key);
  if (it == obj_.end() || it->is_null()) return nullptr;
  return &*it;
}

bool FieldReader::has(std::string_view key) const { return raw(key) != nullptr; }

void FieldReader::fail(std::string message) {
  if (status_.is_ok()) status_ = Status::invalid_argument(std::move(message));
}

std::optional<bool> FieldReader::boolean(std::string_view key) {
  const json* v = raw(key);
  if (!v || !ok()) return std::nullopt;
  if (!v->is_boolean()) {
    fail(fmt::format("'{}' must be a boolean, not {}", name(key), type_name(*v)));
    return std::nullopt;
  }
  return v->get<bool>();
}

std::optional<int64_t> FieldReader::integer(std::string_view key, int64_t min, int64_t max) {
  const json* v = raw(key);
  if (!v || !ok()) return std::nullopt;
  auto i = as_integer(*v);
  if (!i) {
    fail(fmt::format("'{}' must be an integer, not {}", name(key), type_name(*v)));
    return std::nullopt;
  }
  if (*i < min || *i > max) {
    fail(fmt::format("'{}' = {} is out of range [{}, {}]", name(key), *i, min, max));
    return std::nullopt;
  }
  return i;
}

std::optional<double> FieldReader::number(std::string_view key) {
  const json* v = raw(key);
  if (!v || !ok()) return std::nullopt;
  if (!v->is_number()) {
    fail(fmt::format("'{}' must be a number, not {}", name(key), type_name(*v)));
    return std::nullopt;
  }
  double d = v->get<double>();
  if (!std::isfinite(d)) {
    fail(fmt::format("'{}' must be finite", name(key)));
    return std::nullopt;
  }
  return d;
}

std::optional<std::string> FieldReader::string(std::string_view key) {
  const json* v = raw(key);
  if (!v || !ok()) return std::nullopt;
  if (!v->is_string()) {
    fail(fmt::format("'{}' must be a string, not {}", name(key), type_name(*v)));
    return std::nullopt;
  }
  return v->get<std::string>();
}

std::optional<std::vector<std::string>> FieldReader::strings(std::string_view key) {
  const json* v = raw(key);
  if (!v || !ok()) return std::nullopt;
  std::vector<std::string> out;
  if (v->is_string()) {
    out.push_back(v->get<std::string>());
    return out;
  }
  if (!v->is_array()) {
    fail(fmt::format("'{}' must be a string or a list of strings, not {}", name(key), type_name(*v)));
    return std::nullopt;
  }
  for (const json& e : *v) {
    if (!e.is_string()) {
      fail(fmt::format("'{}' must be a string or a list of strings (found {})", name(key), type_name(e)));
      return std::nullopt;
    }
    out.push_back(e.get<std::string>());
  }
  return out;
}

std::optional<std::vector<int32_t>> FieldReader::int_list(std::string_view key, int64_t min, int64_t max) {
  const json* v = raw(key);
  if (!v || !ok()) return std::nullopt;
  if (!v->is_array()) {
    fail(fmt::format("'{}' must be a list of integers, not {}", name(key), type_name(*v)));
    return std::nullopt;
  }
  std::vector<int32_t> out;
  out.reserve(v->size());
  for (const json& e : *v) {
    auto i = as_integer(e);
    if (!i) {
      fail(fmt::format("'{}' must be a list of integers (found {})", name(key), type_name(e)));
      return std::nullopt;
    }
    if (*i < min || *i > max) {
      fail(fmt::format("'{}' holds {}, out of range [{}, {}]", name(key), *i, min, max));
      return std::nullopt;
    }
    out.push_back(static_cast<int32_t>(*i));
  }
  return out;
}

void FieldReader::refuse(std::string_view key, std::string_view why) {
  if (!obj_.is_object() || !ok()) return;
  auto it = obj_.find(key);
  if (it == obj_.end() || is_empty_value(*it)) return;
  fail(fmt::format("'{}' is not supported: {}", name(key), why));
}

namespace {

constexpr int64_t kIntMax = std::numeric_limits<int32_t>::max();

}  // namespace

void read_sampling(FieldReader& r, bool openai, SamplingSpec& out) {
  engine::SamplingParams& p = out.params;
  if (auto v = r.number("temperature")) p.temperature = static_cast<float>(*v);
  if (auto v = r.number("top_p")) p.top_p = static_cast<float>(*v);
  if (auto v = r.integer("top_k", std::numeric_limits<int32_t>::min(), kIntMax)) {
    // SGLang: -1 (or 0, its "no limit" in older versions) disables top-k.
    if (*v < -1) r.fail(fmt::format("'{}' = {} must be -1 (no limit) or positive", r.name("top_k"), *v));
    p.top_k = static_cast<int>(*v);
  }
  if (auto v = r.number("min_p")) p.min_p = static_cast<float>(*v);
  if (auto v = r.number("repetition_penalty")) p.repetition_penalty = static_cast<float>(*v);
  if (auto v = r.number("frequency_penalty")) p.frequency_penalty = static_cast<float>(*v);
  if (auto v = r.number("presence_penalty")) p.presence_penalty = static_cast<float>(*v);
  if (auto v = r.boolean("ignore_eos")) p.ignore_eos = *v;
  if (auto v = r.int_list("stop_token_ids", 0, kIntMax)) p.stop_token_ids = std::move(*v);
  if (auto v = r.strings("stop")) {
    for (std::string& s : *v) {
      if (!s.empty()) out.stop.push_back(std::move(s));  // an empty stop string would match at once
    }
  }
  if (auto v = r.boolean("skip_special_tokens")) out.skip_special_tokens = *v;
  if (auto v = r.boolean("no_stop_trim")) out.no_stop_trim = *v;
  if (auto v = r.integer("n", 1, kMaxN)) out.n = static_cast<int>(*v);
  if (auto v = r.boolean("spaces_between_special_tokens"); v && !*v) {
    r.fail(fmt::format("'{}' = false is not supported", r.name("spaces_between_special_tokens")));
  }
  const char* seed_key = openai ? "seed" : "sampling_seed";
  // Seeds are 64-bit in the engine; OpenAI clients send any integer.
  if (auto v = r.integer(seed_key, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max())) {
    p.seed = static_cast<uint64_t>(*v);
  }
  if (!openai) {
    if (auto v = r.integer("max_new_tokens", 0, kIntMax)) out.max_new_tokens = static_cast<int>(*v);
  }
  const char* min_key = openai ? "min_tokens" : "min_new_tokens";
  r.refuse(min_key, "a minimum output length is not implemented");
  const char* structured = "structured output (constrained decoding) is not implemented";
  for (const char* k : {"regex", "json_schema", "ebnf", "structural_tag", "stop_regex"}) r.refuse(k, structured);
  r.refuse("logit_bias", "logit biases are not implemented");
  r.refuse("custom_logit_processor", "custom logit processors are not implemented");
}

bool is_sampling_params_key(std::string_view key) {
  static const char* const kKeys[] = {
      "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "frequency_penalty",
      "presence_penalty", "ignore_eos", "stop_token_ids", "stop", "skip_special_tokens",
      "no_stop_trim", "n", "spaces_between_special_tokens", "sampling_seed", "max_new_tokens",
      "min_new_tokens", "regex", "json_schema", "ebnf", "structural_tag", "stop_regex",
      "logit_bias", "custom_logit_processor", "custom_params"};
  for (const char* k : kKeys) {
    if (key == k) return true;
  }
  return false;
}

size_t json_depth(std::string_view text) {
  size_t depth = 0, max_depth = 0;
  bool in_string = false, escape = false;
  for (char c : text) {
    if (in_string) {
      if (escape) escape = false;
      else if (c == '\\') escape = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') max_depth = std::max(max_depth, ++depth);
    else if ((c == ']' || c == '}') && depth > 0) --depth;
  }
  return max_depth;
}

Result<json> parse_json_object(std::string_view body) {
  if (json_depth(body) > kMaxJsonDepth) {
    return Status::invalid_argument(fmt::format("the JSON body nests deeper than {} levels", kMaxJsonDepth));
  }
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::invalid_argument("the body is not valid JSON");
  if (!j.is_object()) return Status::invalid_argument("the body must be a JSON object");
  return j;
}

}  // namespace pdctl::worker

#pragma once
// Typed reading of the fields of a JSON request, with SGLang's and OpenAI's meanings, and
// errors that name the field: a wrong type, a value out of range, a feature pdctl refuses
// (structured output, logit_bias...) are kInvalidArgument (HTTP 400), never ignored.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "engine/sampler.h"

namespace pdctl::worker {

// Reads fields of one JSON object. JSON null counts as absent (pydantic's Optional). The
// first error sticks: later reads return nullopt and status() reports it.
class FieldReader {
 public:
  // `where` prefixes field names in messages ("sampling_params.").
  explicit FieldReader(const nlohmann::json& obj, std::string where = {});

  bool has(std::string_view key) const;
  const nlohmann::json* raw(std::string_view key) const;  // null when absent or null

  std::optional<bool> boolean(std::string_view key);
  // Integers; an integral float (2.0) is accepted, as pydantic does.
  std::optional<int64_t> integer(std::string_view key, int64_t min, int64_t max);
  std::optional<double> number(std::string_view key);
  std::optional<std::string> string(std::string_view key);
  // A string or a list of strings (OpenAI's `stop`).
  std::optional<std::vector<std::string>> strings(std::string_view key);
  std::optional<std::vector<int32_t>> int_list(std::string_view key, int64_t min, int64_t max);

  // Refuses a field pdctl does not implement when it is present and not "empty"
  // (null, false, 0, "", [] and {} count as empty).
  void refuse(std::string_view key, std::string_view why);

  void fail(std::string message);
  const Status& status() const { return status_; }
  bool ok() const { return status_.is_ok(); }
  std::string name(std::string_view key) const { return where_ + std::string(key); }

 private:
  const nlohmann::json& obj_;
  std::string where_;
  Status status_;
};

// The sampling fields shared by /generate's `sampling_params` and the OpenAI requests.
struct SamplingSpec {
  engine::SamplingParams params;        // max_new_tokens stays at its default when unset
  std::optional<int> max_new_tokens;    // as given
  std::vector<std::string> stop;
  bool skip_special_tokens = true;
  bool no_stop_trim = false;
  int n = 1;
};

// The largest `n` and top-logprobs count accepted (OpenAI's limits).
inline constexpr int kMaxN = 128;
inline constexpr int kMaxTopLogprobs = 20;

// Reads the sampling fields present in `r`'s object into `out`. `openai`: the OpenAI names
// (`seed`, `min_tokens`; max tokens are read by the caller); otherwise SGLang's
// sampling_params names (`max_new_tokens`, `sampling_seed`, `min_new_tokens`). The fields of
// structured output (`regex`, `json_schema`, `ebnf`, `structural_tag`, `stop_regex`),
// `logit_bias` and `min_new_tokens` > 0 are refused.
void read_sampling(FieldReader& r, bool openai, SamplingSpec& out);

// The keys /generate's `sampling_params` may hold (others are refused there).
bool is_sampling_params_key(std::string_view key);

// Nesting depth of a JSON text (arrays and objects), counted without parsing, so that a
// hostile body cannot make the parser or the destructor recurse deeply.
size_t json_depth(std::string_view text);
inline constexpr size_t kMaxJsonDepth = 64;

// Parses a request body: a JSON object within kMaxJsonDepth, else kInvalidArgument.
Result<nlohmann::json> parse_json_object(std::string_view body);

}  // namespace pdctl::worker

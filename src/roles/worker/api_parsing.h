#pragma once
// Request bodies of the worker API to engine requests: /generate (SGLang), /v1/completions
// and /v1/chat/completions (OpenAI), /v1/tokenize and /v1/detokenize. Pure functions of
// the body and the model (its tokenizer, context length, name): tokenization and the chat
// template happen here. Errors are Status values whose code gives the HTTP status
// (http_status_for): kInvalidArgument / kOutOfRange 400, kNotFound 404 (unknown model).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "engine/engine_service.h"
#include "engine/tokenizer.h"

namespace pdctl::worker {

// What the parsers need to know about the served model.
struct ApiModel {
  std::string name;                              // --served-model-name
  const engine::Tokenizer* tokenizer = nullptr;  // null: --skip-tokenizer-init
  int64_t context_length = 0;                    // prompt plus output, at most
  int64_t vocab_size = 0;                        // of the model (ids must be below it)
};

// PD disaggregation fields of one request item (SGLang's bootstrap_*); `pdctl serve`
// ignores them, the prefill and decode roles use them.
struct Bootstrap {
  std::optional<std::string> host;
  std::optional<int64_t> port;
  std::optional<int64_t> room;
};

// One sequence a call generates: a prompt, or one of its `n` samples.
struct ItemSpec {
  engine::GenerateRequest req;
  int prompt_index = 0;     // which prompt of the call it answers
  int sample_index = 0;     // 0 .. n-1 among that prompt's samples
  Bootstrap bootstrap;
};

// POST /generate.
struct GenerateCall {
  std::vector<ItemSpec> items;  // prompt-major: prompt p's samples are p*n .. p*n+n-1
  bool batch = false;           // the reply is a list (a list of prompts, or n > 1)
  bool stream = false;
  bool return_text_in_logprobs = false;
  int n = 1;
};

// POST /v1/completions and /v1/chat/completions.
struct OpenAiCall {
  bool chat = false;
  std::vector<ItemSpec> items;  // choice i is items[i]; prompt-major as above
  int n = 1;
  std::string id;               // "cmpl-..." / "chatcmpl-..." (or the request's rid)
  std::string model;            // echoed in the reply
  bool stream = false;
  bool include_usage = false;       // stream_options.include_usage
  bool continuous_usage = false;    // stream_options.continuous_usage_stats
  bool logprobs = false;            // completions: `logprobs` given; chat: `logprobs: true`
  int top_logprobs = 0;             // alternatives per token
  bool echo = false;                // completions: the prompt text before the output
  std::vector<std::string> echo_text;  // per prompt
  bool return_token_ids = false;    // SGLang's extra: choices carry token_ids
};

// /v1/tokenize
struct TokenizeCall {
  std::vector<std::vector<int32_t>> tokens;
  bool batch = false;  // `prompt` was a list
};

// Request ids: rid fields, and "cmpl-"/"chatcmpl-" ids. `random_hex` gives 32 hex digits.
using RandomHex = std::string (*)();
std::string random_hex_id();

Result<GenerateCall> parse_generate(const nlohmann::json& body, const ApiModel& model,
                                    RandomHex random_hex = random_hex_id);
Result<OpenAiCall> parse_completion(const nlohmann::json& body, const ApiModel& model,
                                    RandomHex random_hex = random_hex_id);
Result<OpenAiCall> parse_chat(const nlohmann::json& body, const ApiModel& model,
                              RandomHex random_hex = random_hex_id);
Result<TokenizeCall> parse_tokenize(const nlohmann::json& body, const ApiModel& model);
// /v1/detokenize: {"text": ...} (a string, or a list for a list of token lists).
Result<nlohmann::json> run_detokenize(const nlohmann::json& body, const ApiModel& model);

// The `model` field of an OpenAI request: absent is fine (SGLang's "default"); another name
// than the served one is kNotFound (OpenAI answers 404 model_not_found).
Status check_model_name(const nlohmann::json& body, const ApiModel& model);

// The HTTP status of an error of the parsers or of EngineService::submit.
int http_status_for(Errc code);

}  // namespace pdctl::worker

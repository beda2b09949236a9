#pragma once
// The HTTP request of one benchmark request per backend, as sglang.bench_serving sends it
// (async_request_sglang_generate, async_request_openai_completions,
// async_request_openai_chat_completions): greedy (temperature 0), ignore_eos unless
// --disable-ignore-eos, streaming unless --disable-stream.
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "roles/bench/bench_dataset.h"
#include "roles/bench/bench_options.h"
#include "roles/bench/bench_record.h"

namespace pdctl::roles {

struct RequestBodyOptions {
  Backend backend = Backend::kSglang;
  std::string model;        // "model" of OpenAI requests
  bool stream = true;       // also asks OpenAI servers for a final usage chunk
  bool ignore_eos = true;
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();  // merged at top level
};

// From the flags; an --extra-request-body that is not a JSON object is an error.
Result<RequestBodyOptions> request_body_options(const BenchOptions& opts);

// "/generate", "/v1/completions" or "/v1/chat/completions".
std::string_view endpoint_path(Backend backend);

// The JSON body for `row`, asking for `output_len` new tokens:
//   sglang       {"text" | "input_ids", "sampling_params": {"temperature": 0.0,
//                 "max_new_tokens", "ignore_eos"}, "stream"}
//   openai       {"model", "prompt" (text or ids), "temperature": 0.0, "max_tokens",
//                 "ignore_eos", "stream", "stream_options": {"include_usage": true}}
//   openai-chat  as openai with "messages": [{"role": "user", "content"}] for "prompt"
// stream_options only when streaming. Invalid UTF-8 in a prompt becomes U+FFFD.
std::string build_request_body(const RequestBodyOptions& opts, const DatasetRow& row,
                               int output_len);

}  // namespace pdctl::roles

#pragma once
// PD request rewriting and response merging (SGLang's sgl-router/src/routers/http/
// pd_router.rs and pd_types.rs), on nlohmann::json bodies. Pure functions: the HTTP layer
// parses the client's body once, then per attempt calls make_pd_body() (a new room each
// time), sends the result to both workers, and merges what comes back.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "roles/router/router_common.h"
#include "roles/router/worker.h"

namespace pdctl::router {

enum class ApiRoute { kGenerate, kCompletions, kChatCompletions };

// "/generate", "/v1/completions", "/v1/chat/completions" (also the metrics' route label).
const char* route_path(ApiRoute r);
std::optional<ApiRoute> route_from_path(std::string_view path);

// How many requests one body holds, as SGLang decides it (nullopt: a single request):
//   /generate             "input_ids" a non-empty list of lists -> its length; pdctl also
//                         counts "text" as a non-empty list of strings (SGLang's router
//                         would refuse that body)
//   /v1/chat/completions  "n" > 1 -> n
//   /v1/completions       "prompt" a non-empty list of strings or of token lists -> its
//                         length ("n" is ignored, as in SGLang); a list of integers is one
//                         tokenized prompt
std::optional<size_t> batch_size(ApiRoute route, const nlohmann::json& body);

// A random room id in [0, 2^63 - 1] (Python's random.randint(0, 2**63 - 1)).
uint64_t generate_bootstrap_room(Rng& rng);

struct BootstrapTarget {
  std::string host;         // the prefill URL's host
  std::optional<int> port;  // JSON null when the worker's default applies
};

// Sets "bootstrap_host", "bootstrap_port" and "bootstrap_room" in `body` (a JSON object),
// replacing any the client sent; for a batch each is a list with one entry per item, each
// item with its own room. Errors: invalid_argument when `body` is not an object.
Status inject_bootstrap(nlohmann::json& body, const BootstrapTarget& target,
                        std::optional<size_t> batch, Rng& rng);

// The body for both workers of one attempt: `request` plus the bootstrap fields of `prefill`,
// fresh rooms included (call it again for a retry).
Result<nlohmann::json> make_pd_body(ApiRoute route, const nlohmann::json& request,
                                    const Worker& prefill, Rng& rng);

// "stream": true.
bool is_streaming(const nlohmann::json& body);

// Whether the response carries input logprobs to merge: /generate "return_logprob" true
// (any true for a per-item list); chat "logprobs" true; completions "logprobs" present and
// not null (SGLang: logprobs.is_some()).
bool wants_logprobs(ApiRoute route, const nlohmann::json& body);

// The text cache_aware routes by. pdctl uses SGLang's extract_text_for_routing (its regular
// router) for both modes:
//   /generate             "text" (a list is joined with spaces); else "input_ids" as decimal
//                         ids joined with spaces (a batch flattened); else ""
//   /v1/chat/completions  every message's text joined with spaces: string contents, the
//                         "text" parts of part lists, assistant content + reasoning_content
//   /v1/completions       "prompt" (a list of strings joined with spaces; token ids as above)
// SGLang's PD router differs: it passes only /generate's "text" (nothing for input_ids, so
// cache_aware sees "" and falls to the smallest tree) and only the first chat message.
std::string routing_text(ApiRoute route, const nlohmann::json& body);

// Prefill's "meta_info.input_token_logprobs" (a non-stream /generate response object).
std::optional<nlohmann::json> prefill_input_logprobs(const nlohmann::json& prefill_response);

// Puts prefill's meta_info.input_token_logprobs in front of decode's, in place, where both
// are lists (SGLang's merge_logprobs_in_json). For a batch (both responses lists of equal
// length) item by item, a pdctl addition. Returns whether anything was merged.
bool merge_logprobs(const nlohmann::json& prefill_response, nlohmann::json& decode_response);

// The same for one streamed event's data (the text after "data: "): prefill's list goes in
// front of the chunk's meta_info.input_token_logprobs, in every chunk that has one (SGLang
// merges each chunk, not only the first). Returns the new data, or nullopt to pass the event
// through unchanged ("[DONE]", not JSON, or nothing to merge).
std::optional<std::string> merge_stream_logprobs(const nlohmann::json& prefill_logprobs,
                                                 std::string_view event_data);

}  // namespace pdctl::router

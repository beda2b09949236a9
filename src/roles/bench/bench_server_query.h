#pragma once
// What the serving benchmark asks the server outside the timed run, as sglang.bench_serving
// does: the model name when --model is not given (GET /v1/models, the first id), the
// tokenizer it runs when no tokenizer is given (GET /get_server_info, /get_model_info,
// /v1/models), and after the run the server's info for the report (GET /get_server_info,
// whose absence is tolerated). Each query runs on a short-lived loop of its own, before
// or after the request driver's; the parsers are pure and tested on their own.
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "net/http_client.h"
#include "net/url.h"
#include "roles/bench/bench_engine_tokenizer.h"

namespace pdctl::roles {

struct ServerTarget {
  net::Endpoint endpoint;
  std::string prefix;     // the path of --base-url ("" or "/x"), put before every endpoint
  net::Headers headers;   // Authorization when OPENAI_API_KEY is set, as sglang
};

// The target of --base-url (or --host/--port): "http://h:p/x/" gives h:p and prefix "/x".
Result<ServerTarget> server_target(const std::string& base_url);

// Authorization: Bearer $OPENAI_API_KEY when that is set (sglang's get_auth_headers).
net::Headers auth_headers();

// One request on its own loop. Transport errors and timeouts are errors; any HTTP status
// is an answer.
Result<net::HttpResponse> query_server(const ServerTarget& to, std::string_view method,
                                       std::string_view path,
                                       std::chrono::milliseconds timeout = std::chrono::seconds(30));

// /v1/models' body: data[0].id, as sglang takes for --model.
Result<std::string> parse_first_model_id(std::string_view models_body);

// Adds what one discovery answer says about the tokenizer to `hints`: from /get_server_info
// or /get_model_info ("tokenizer_path", "model_path", "load_format"; a PD router's
// {"decode": [info, ...]} is read through its first decode worker) and from /v1/models
// (each model's "root", then "id"). Bodies that are not JSON objects add nothing.
void add_tokenizer_hints(std::string_view info_body, ServerTokenizerHints& hints);
void add_model_list_hints(std::string_view models_body, ServerTokenizerHints& hints);

// The report's server info: sglang keeps /get_server_info's JSON (a PD router's first
// decode worker's), and internal_states[0].avg_spec_accept_length when present.
struct ServerInfo {
  std::string json;  // compact JSON; empty when the server gave none
  std::optional<double> accept_length;
};
ServerInfo parse_server_info(std::string_view body);

}  // namespace pdctl::roles

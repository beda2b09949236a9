#include "roles/bench/bench_request_body.h"

namespace pdctl::roles {

Result<RequestBodyOptions> request_body_options(const BenchOptions& opts) {
  RequestBodyOptions r;
  PDCTL_ASSIGN_OR_RETURN(r.backend, parse_backend(opts.backend));
  r.model = opts.model;
  r.stream = !opts.disable_stream;
  r.ignore_eos = !opts.disable_ignore_eos;
  if (!opts.extra_request_body.empty()) {
    auto extra = nlohmann::ordered_json::parse(opts.extra_request_body, nullptr,
                                               /*allow_exceptions=*/false);
    if (extra.is_discarded() || !extra.is_object()) {
      return Status::invalid_argument("--extra-request-body must be a JSON object");
    }
    r.extra = std::move(extra);
  }
  return r;
}

std::string_view endpoint_path(Backend backend) {
  switch (backend) {
    case Backend::kSglang: return "/generate";
    case Backend::kOpenAI: return "/v1/completions";
    case Backend::kOpenAIChat: return "/v1/chat/completions";
  }
  return "/generate";
}

std::string build_request_body(const RequestBodyOptions& opts, const DatasetRow& row,
                               int output_len) {
  using json = nlohmann::ordered_json;
  const bool ids = !row.prompt_ids.empty();
  json body = json::object();
  switch (opts.backend) {
    case Backend::kSglang:
      if (ids) {
        body["input_ids"] = row.prompt_ids;
      } else {
        body["text"] = row.prompt;
      }
      body["sampling_params"] = {{"temperature", 0.0},
                                 {"max_new_tokens", output_len},
                                 {"ignore_eos", opts.ignore_eos}};
      body["stream"] = opts.stream;
      break;
    case Backend::kOpenAI:
    case Backend::kOpenAIChat:
      body["model"] = opts.model;
      if (opts.backend == Backend::kOpenAI) {
        if (ids) {
          body["prompt"] = row.prompt_ids;
        } else {
          body["prompt"] = row.prompt;
        }
      } else {
        body["messages"] = json::array({{{"role", "user"}, {"content", row.prompt}}});
      }
      body["temperature"] = 0.0;
      body["max_tokens"] = output_len;
      body["ignore_eos"] = opts.ignore_eos;
      body["stream"] = opts.stream;
      // Without it OpenAI servers report no usage in a stream, and the output length
      // would fall back to the requested one.
      if (opts.stream) body["stream_options"] = {{"include_usage", true}};
      break;
  }
  for (const auto& [key, value] : opts.extra.items()) body[key] = value;
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace pdctl::roles

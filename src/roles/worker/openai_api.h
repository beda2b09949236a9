#pragma once
// The OpenAI-compatible routes, with SGLang's extra fields:
//   POST /v1/completions          text_completion objects; streamed as chunks whose `text`
//                                 is the new text, ending with the finish_reason
//   POST /v1/chat/completions     chat.completion objects; streamed as chat.completion.chunk:
//                                 first {"role": "assistant", "content": ""}, then content
//                                 deltas, then an empty delta with the finish_reason
//   stream_options.include_usage  a last chunk with empty choices and the usage
//   POST /v1/tokenize, /v1/detokenize (and /tokenize, /detokenize)
//   GET  /v1/models, /v1/models/{model}
#include <memory>
#include <string>

#include "engine/tokenizer.h"
#include "net/http_server.h"
#include "roles/worker/api_call.h"
#include "roles/worker/api_parsing.h"

namespace pdctl::worker {

class WorkerApi;

void add_openai_routes(WorkerApi& api, net::HttpServer& server, const std::string& api_key);

// The rendering of a completions or chat call (exposed for tests). `created`: unix seconds.
std::unique_ptr<ReplyFormat> make_openai_format(const OpenAiCall& call, const engine::Tokenizer* tok,
                                                const std::string& model_name, int64_t created);

}  // namespace pdctl::worker

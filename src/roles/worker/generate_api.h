#pragma once
// SGLang's native generation route: POST (and PUT) /generate.
//
// Reply: {text, output_ids, meta_info} for one prompt, a list of them for a batch (a list
// of prompts, or sampling_params.n > 1). Streamed: one SSE event `data: {...}` per output
// of an item, each carrying the item's whole text and output_ids so far (SGLang's default,
// non-incremental streaming, as sglang.bench_serving reads it) and, for a batch, its
// "index"; then `data: [DONE]`.
#include <memory>
#include <string>

#include "engine/tokenizer.h"
#include "net/http_server.h"
#include "roles/worker/api_call.h"
#include "roles/worker/api_parsing.h"

namespace pdctl::worker {

class WorkerApi;

void add_generate_routes(WorkerApi& api, net::HttpServer& server, const std::string& api_key);

// The /generate rendering of a call (exposed for tests).
std::unique_ptr<ReplyFormat> make_generate_format(const GenerateCall& call, const engine::Tokenizer* tok);

}  // namespace pdctl::worker

#pragma once
// The worker flags (WorkerOptions) mapped onto the settings of the pieces a worker is made
// of: the HTTP server, the model runner, the scheduler, and the tokenizer; plus the
// server's arguments as SGLang's /get_server_info shows them.
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "engine/engine_service.h"
#include "engine/model_runner.h"
#include "engine/tokenizer.h"
#include "net/http_server.h"
#include "roles/worker/worker_options.h"

namespace pdctl::worker {

net::ServerOptions server_options(const roles::WorkerOptions& o);
engine::EngineOptions engine_options(const roles::WorkerOptions& o);
engine::SchedulerOptions scheduler_options(const roles::WorkerOptions& o);

// The model name of the API: --served-model-name, else --model-path.
std::string served_model_name(const roles::WorkerOptions& o);
// Where the tokenizer comes from: --tokenizer-path, else --model-path.
std::string tokenizer_path(const roles::WorkerOptions& o);

// The worker's tokenizer, by the rules of the README:
//   --skip-tokenizer-init             none (nullopt): token ids in, token ids out;
//   --tokenizer-path / --model-path   a Hugging Face directory with tokenizer.json, a
//                                     tokenizer.json, or a GGUF file's metadata;
//   --load-format dummy               the byte-level fallback when the path is a preset name
//                                     or a directory without tokenizer files.
// --chat-template replaces the detected template. Errors name the file.
Result<std::optional<engine::Tokenizer>> load_worker_tokenizer(const roles::WorkerOptions& o);

// The flags under SGLang's server-argument names (model_path, tokenizer_path, port, ...),
// for /get_server_info. The API key is never shown.
nlohmann::json server_args_json(const roles::WorkerOptions& o);

}  // namespace pdctl::worker

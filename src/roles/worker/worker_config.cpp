#include "roles/worker/worker_config.h"

#include <filesystem>

#include <spdlog/spdlog.h>

namespace pdctl::worker {

namespace fs = std::filesystem;

namespace {

std::chrono::milliseconds seconds_to_ms(double s) {
  return std::chrono::milliseconds(static_cast<int64_t>(s * 1000.0));
}

}  // namespace

net::ServerOptions server_options(const roles::WorkerOptions& o) {
  net::ServerOptions s;
  s.host = o.host;
  s.port = o.port;
  s.max_payload_size = static_cast<uint64_t>(o.max_payload_size);
  s.max_connections = static_cast<size_t>(o.max_connections);
  s.keep_alive_timeout = seconds_to_ms(o.keep_alive_timeout_secs);
  s.header_timeout = seconds_to_ms(o.header_timeout_secs);
  return s;
}

engine::EngineOptions engine_options(const roles::WorkerOptions& o) {
  engine::EngineOptions e;
  e.model_path = o.model_path;
  e.load_format = o.load_format;
  e.dtype = o.dtype;
  e.kv_cache_dtype = o.kv_cache_dtype;
  e.device = o.device;
  e.page_size = o.page_size;
  e.max_total_tokens = o.max_total_tokens;
  e.mem_fraction_static = o.mem_fraction_static;
  e.context_length = o.context_length;
  e.max_running_requests = o.max_running_requests;
  e.threads = o.threads;
  e.seed = static_cast<uint64_t>(o.random_seed);
  return e;
}

engine::SchedulerOptions scheduler_options(const roles::WorkerOptions& o) {
  engine::SchedulerOptions s;
  s.max_running_requests = o.max_running_requests.value_or(0);
  // 0 means unbounded for the scheduler, as an unset flag does.
  s.max_queued_requests = o.max_queued_requests.value_or(0);
  s.chunked_prefill_size = o.chunked_prefill_size;
  s.max_prefill_tokens = o.max_prefill_tokens;
  s.disable_radix_cache = o.disable_radix_cache;
  s.default_seed = static_cast<uint64_t>(o.random_seed);
  return s;
}

std::string served_model_name(const roles::WorkerOptions& o) {
  return o.served_model_name.empty() ? o.model_path : o.served_model_name;
}

std::string tokenizer_path(const roles::WorkerOptions& o) {
  return o.tokenizer_path.empty() ? o.model_path : o.tokenizer_path;
}

Result<std::optional<engine::Tokenizer>> load_worker_tokenizer(const roles::WorkerOptions& o) {
  if (o.skip_tokenizer_init) return std::optional<engine::Tokenizer>();
  const std::string path = tokenizer_path(o);
  std::error_code ec;
  const bool exists = fs::exists(path, ec);
  const bool has_files = exists && (!fs::is_directory(path, ec) || fs::exists(fs::path(path) / "tokenizer.json", ec));
  std::optional<engine::Tokenizer> tok;
  if (o.load_format == "dummy" && o.tokenizer_path.empty() && !has_files) {
    // A preset name, or a config.json without tokenizer files: the dummy models' ids
    // (BOS 1, EOS 2) are those of the byte-level fallback.
    tok = engine::Tokenizer::byte_level();
  } else {
    if (!exists) return Status::not_found("tokenizer not found: " + path);
    auto loaded = engine::Tokenizer::load(path);
    if (!loaded) {
      return std::move(loaded).status().with_context(
          "loading the tokenizer (pass --tokenizer-path, or --skip-tokenizer-init for token ids only)");
    }
    tok = std::move(*loaded);
  }
  if (!o.chat_template.empty()) {
    PDCTL_RETURN_IF_ERROR(tok->set_chat_template(o.chat_template).with_context("--chat-template"));
  }
  return tok;
}

nlohmann::json server_args_json(const roles::WorkerOptions& o) {
  auto opt = [](const auto& v) -> nlohmann::json {
    if (v) return *v;
    return nullptr;
  };
  nlohmann::json j;
  j["role"] = roles::worker_role_name(o.role);
  j["host"] = o.host;
  j["port"] = o.port;
  j["api_key"] = o.api_key ? nlohmann::json("<hidden>") : nlohmann::json(nullptr);
  j["max_payload_size"] = o.max_payload_size;
  j["max_connections"] = o.max_connections;
  j["keep_alive_timeout_secs"] = o.keep_alive_timeout_secs;
  j["header_timeout_secs"] = o.header_timeout_secs;
  j["model_path"] = o.model_path;
  j["tokenizer_path"] = o.skip_tokenizer_init ? nlohmann::json(nullptr) : nlohmann::json(tokenizer_path(o));
  j["load_format"] = o.load_format;
  j["dtype"] = o.dtype;
  j["kv_cache_dtype"] = o.kv_cache_dtype;
  j["served_model_name"] = served_model_name(o);
  j["chat_template"] = o.chat_template.empty() ? nlohmann::json(nullptr) : nlohmann::json(o.chat_template);
  j["context_length"] = opt(o.context_length);
  j["skip_tokenizer_init"] = o.skip_tokenizer_init;
  j["random_seed"] = o.random_seed;
  j["device"] = o.device;
  j["page_size"] = o.page_size;
  j["max_total_tokens"] = opt(o.max_total_tokens);
  j["mem_fraction_static"] = o.mem_fraction_static;
  j["max_running_requests"] = opt(o.max_running_requests);
  j["max_queued_requests"] = opt(o.max_queued_requests);
  j["chunked_prefill_size"] = o.chunked_prefill_size;
  j["max_prefill_tokens"] = o.max_prefill_tokens;
  j["disable_radix_cache"] = o.disable_radix_cache;
  j["schedule_policy"] = o.schedule_policy;
  j["threads"] = o.threads;
  const char* mode = o.role == roles::WorkerRole::kPrefill  ? "prefill"
                     : o.role == roles::WorkerRole::kDecode ? "decode"
                                                            : "null";
  j["disaggregation_mode"] = mode;
  if (o.role != roles::WorkerRole::kServe) {
    j["disaggregation_bootstrap_port"] = o.disaggregation_bootstrap_port;
    j["disaggregation_transfer_backend"] = o.disaggregation_transfer_backend;
    j["disaggregation_ib_device"] = o.disaggregation_ib_device;
  }
  return j;
}

}  // namespace pdctl::worker

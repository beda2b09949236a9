#pragma once
// Flags of the three worker roles (serve, prefill, decode). Names and meanings follow
// SGLang's server arguments (python -m sglang.launch_server) wherever the concept exists.
#include <cstdint>
#include <optional>
#include <string>

#include "common/options.h"

namespace pdctl::roles {

enum class WorkerRole { kServe, kPrefill, kDecode };
const char* worker_role_name(WorkerRole role);

struct WorkerOptions {
  WorkerRole role = WorkerRole::kServe;

  // HTTP server
  std::string host = "127.0.0.1";
  int port = 30000;
  std::optional<std::string> api_key;           // Bearer token required on every route but /health
  int64_t max_payload_size = 512ll << 20;       // bytes of one request body
  int max_connections = 4096;                   // open HTTP connections
  double keep_alive_timeout_secs = 60;          // idle keep-alive connection
  double header_timeout_secs = 10;              // a request's headers must arrive within this

  // Model
  std::string model_path;                       // HF directory or .gguf file
  std::string tokenizer_path;                   // defaults to model_path
  std::string load_format = "auto";             // auto | gguf | safetensors | dummy
  std::string dtype = "auto";                   // auto | float32 | float16 | bfloat16
  std::string kv_cache_dtype = "auto";          // auto (= dtype) | float32 | float16 | bfloat16
  std::string served_model_name;                // defaults to model_path
  std::string chat_template;                    // llama-3 | chatml | llama-2 (overrides detection)
  std::optional<int> context_length;            // defaults to the model's
  bool skip_tokenizer_init = false;             // ids in, ids out
  int random_seed = 0;                          // for --load-format dummy and default sampling seed
  std::string device = "cpu";                   // cpu | cuda

  // Memory and scheduling
  int page_size = 16;                           // tokens per KV page
  std::optional<int64_t> max_total_tokens;      // KV pool size in tokens
  double mem_fraction_static = 0.3;             // of physical memory, used when max_total_tokens is unset
  std::optional<int> max_running_requests;
  std::optional<int> max_queued_requests;
  int chunked_prefill_size = 8192;              // tokens of one prompt per step; -1 disables chunking
  int max_prefill_tokens = 16384;               // prompt tokens in one step
  bool disable_radix_cache = false;
  std::string schedule_policy = "fcfs";
  int threads = 0;                              // CPU threads of the forward pass; 0 = all cores

  // PD disaggregation (prefill and decode roles)
  int disaggregation_bootstrap_port = 8998;
  std::string disaggregation_transfer_backend = "ucx";
  std::string disaggregation_ib_device;         // RDMA device(s) for UCX (UCX_NET_DEVICES)
  double disaggregation_bootstrap_timeout = 300;  // seconds for a room to be bootstrapped
  double disaggregation_waiting_timeout = 300;    // seconds for decode to wait for the KV
  double disaggregation_heartbeat_interval = 5;   // seconds between peer heartbeats
  bool disaggregation_disable_layerwise_transfer = false;  // prefill: send the KV after the whole prompt
};

void add_worker_flags(OptionRegistry& reg, WorkerOptions& opts);

}  // namespace pdctl::roles

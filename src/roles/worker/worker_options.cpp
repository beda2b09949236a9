#include "roles/worker/worker_options.h"

namespace pdctl::roles {

const char* worker_role_name(WorkerRole role) {
  switch (role) {
    case WorkerRole::kServe: return "serve";
    case WorkerRole::kPrefill: return "prefill";
    case WorkerRole::kDecode: return "decode";
  }
  return "worker";
}

void add_worker_flags(OptionRegistry& reg, WorkerOptions& o) {
  const bool pd = o.role != WorkerRole::kServe;

  reg.add("--host", o.host, "Address to listen on")->group("Server");
  reg.add("--port", o.port, "HTTP port")->check(CLI::Range(1, 65535))->group("Server");
  reg.add("--api-key", o.api_key, "Require 'Authorization: Bearer KEY' on the API")->group("Server");
  reg.add("--max-payload-size", o.max_payload_size, "Largest request body in bytes (413 above)")
      ->check(CLI::Range(int64_t{1024}, int64_t{1} << 40))->group("Server");
  reg.add("--max-connections", o.max_connections, "Open HTTP connections at most")
      ->check(CLI::Range(1, 1 << 20))->group("Server");
  reg.add("--keep-alive-timeout-secs", o.keep_alive_timeout_secs, "Close idle keep-alive connections after this")
      ->check(CLI::PositiveNumber)->group("Server");
  reg.add("--header-timeout-secs", o.header_timeout_secs, "A request's headers must arrive within this")
      ->check(CLI::PositiveNumber)->group("Server");

  reg.add("--model-path,--model", o.model_path, "Hugging Face directory or GGUF file (or a dummy preset)")
      ->group("Model");
  reg.add("--tokenizer-path", o.tokenizer_path, "Tokenizer directory or file (default: --model-path)")
      ->group("Model");
  reg.add("--load-format", o.load_format, "auto, gguf, safetensors or dummy (random weights)")
      ->check(CLI::IsMember({"auto", "gguf", "safetensors", "dummy"}))->group("Model");
  reg.add("--dtype", o.dtype, "Compute dtype: auto, float32, float16, bfloat16")
      ->check(CLI::IsMember({"auto", "float32", "float16", "bfloat16", "half", "float"}))->group("Model");
  reg.add("--kv-cache-dtype", o.kv_cache_dtype, "KV cache dtype: auto (= model dtype), float32, float16, bfloat16")
      ->check(CLI::IsMember({"auto", "float32", "float16", "bfloat16"}))->group("Model");
  reg.add("--served-model-name", o.served_model_name, "Model name in the API (default: --model-path)")
      ->group("Model");
  reg.add("--chat-template", o.chat_template, "Chat template: llama-3, chatml or llama-2 (default: detected)")
      ->group("Model");
  reg.add("--context-length", o.context_length, "Context length (default: the model's)")
      ->check(CLI::Range(1, 1 << 24))->group("Model");
  reg.add_flag("--skip-tokenizer-init", o.skip_tokenizer_init, "No tokenizer: token ids in, token ids out")
      ->group("Model");
  reg.add("--random-seed", o.random_seed, "Seed of dummy weights and of unseeded sampling")->group("Model");
  reg.add("--device", o.device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}))->group("Model");

  reg.add("--page-size", o.page_size, "Tokens per KV cache page")
      ->check(CLI::Range(1, 4096))->group("Memory and scheduling");
  reg.add("--max-total-tokens", o.max_total_tokens, "KV pool size in tokens (default: from --mem-fraction-static)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40))->group("Memory and scheduling");
  reg.add("--mem-fraction-static", o.mem_fraction_static, "Fraction of memory for weights and KV pool")
      ->check(CLI::Range(0.01, 0.99))->group("Memory and scheduling");
  reg.add("--max-running-requests", o.max_running_requests, "Requests in the running batch at most")
      ->check(CLI::Range(1, 1 << 20))->group("Memory and scheduling");
  reg.add("--max-queued-requests", o.max_queued_requests, "Waiting requests at most (429 above)")
      ->check(CLI::Range(0, 1 << 24))->group("Memory and scheduling");
  reg.add("--chunked-prefill-size", o.chunked_prefill_size, "Prompt tokens of one request per step (-1: no chunking)")
      ->check(CLI::Range(-1, 1 << 24))->group("Memory and scheduling");
  reg.add("--max-prefill-tokens", o.max_prefill_tokens, "Prompt tokens in one step")
      ->check(CLI::Range(1, 1 << 24))->group("Memory and scheduling");
  reg.add_flag("--disable-radix-cache", o.disable_radix_cache, "Turn off the prefix cache")
      ->group("Memory and scheduling");
  reg.add("--schedule-policy", o.schedule_policy, "Order of waiting requests: fcfs")
      ->check(CLI::IsMember({"fcfs"}))->group("Memory and scheduling");
  reg.add("--threads", o.threads, "CPU threads of the forward pass (0: all cores)")
      ->check(CLI::Range(0, 4096))->group("Memory and scheduling");

  const char* g = "PD disaggregation";
  reg.add("--disaggregation-bootstrap-port", o.disaggregation_bootstrap_port,
          pd ? "Port where decode workers reach this prefill worker" : "Bootstrap port (prefill role)")
      ->check(CLI::Range(1, 65535))->group(g);
  reg.add("--disaggregation-transfer-backend", o.disaggregation_transfer_backend, "KV transfer backend: ucx")
      ->check(CLI::IsMember({"ucx"}))->group(g);
  reg.add("--disaggregation-ib-device", o.disaggregation_ib_device, "RDMA device(s) for UCX, e.g. mlx5_0:1")
      ->group(g);
  reg.add("--disaggregation-bootstrap-timeout", o.disaggregation_bootstrap_timeout,
          "Seconds for a request's bootstrap to complete")
      ->check(CLI::PositiveNumber)->group(g);
  reg.add("--disaggregation-waiting-timeout", o.disaggregation_waiting_timeout,
          "Seconds decode waits for a request's KV")
      ->check(CLI::PositiveNumber)->group(g);
  reg.add("--disaggregation-heartbeat-interval", o.disaggregation_heartbeat_interval,
          "Seconds between heartbeats to each peer")
      ->check(CLI::PositiveNumber)->group(g);
  reg.add_flag("--disaggregation-disable-layerwise-transfer", o.disaggregation_disable_layerwise_transfer,
               "Prefill: send the KV once the whole prompt is computed, not layer by layer")
      ->group(g);
}

}  // namespace pdctl::roles

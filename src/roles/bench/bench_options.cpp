#include "roles/bench/bench_options.h"

namespace pdctl::roles {

void add_bench_flags(OptionRegistry& reg, BenchOptions& o) {
  reg.add_flag("--offline", o.offline, "One-batch engine benchmark, no server (as sglang.bench_one_batch)")
      ->group("Mode");
  reg.add_flag("--kv-transfer", o.kv_transfer, "KV transfer engine benchmark between two processes")
      ->group("Mode");

  const char* t = "Target (online)";
  reg.add("--backend", o.backend, "sglang (/generate), openai (/v1/completions) or openai-chat")
      ->check(CLI::IsMember({"sglang", "openai", "openai-chat"}))->group(t);
  reg.add("--base-url", o.base_url, "Server URL (overrides --host/--port)")->group(t);
  reg.add("--host", o.host, "Server host")->group(t);
  reg.add("--port", o.port, "Server port")->check(CLI::Range(1, 65535))->group(t);
  reg.add("--model", o.model, "Model name for OpenAI requests")->group(t);
  reg.add("--tokenizer", o.tokenizer, "Tokenizer (directory, tokenizer.json or GGUF) for prompt lengths")
      ->group(t);

  const char* d = "Dataset (online)";
  reg.add("--dataset-name", o.dataset_name, "random, random-ids, sharegpt or generated-shared-prefix")
      ->check(CLI::IsMember({"random", "random-ids", "sharegpt", "generated-shared-prefix"}))->group(d);
  reg.add("--dataset-path", o.dataset_path, "Local ShareGPT JSON file")->group(d);
  reg.add("--num-prompts", o.num_prompts, "Requests to send")->check(CLI::Range(1, 1 << 30))->group(d);
  reg.add("--random-input-len", o.random_input_len, "random: input tokens")
      ->check(CLI::Range(1, 1 << 24))->group(d);
  reg.add("--random-output-len", o.random_output_len, "random: output tokens")
      ->check(CLI::Range(1, 1 << 24))->group(d);
  reg.add("--random-range-ratio", o.random_range_ratio, "random: lengths uniform in [L*ratio, L]")
      ->check(CLI::Range(0.0, 1.0))->group(d);
  reg.add("--gsp-num-groups", o.gsp_num_groups, "generated-shared-prefix: groups")
      ->check(CLI::Range(1, 1 << 20))->group(d);
  reg.add("--gsp-prompts-per-group", o.gsp_prompts_per_group, "generated-shared-prefix: prompts per group")
      ->check(CLI::Range(1, 1 << 20))->group(d);
  reg.add("--gsp-system-prompt-len", o.gsp_system_prompt_len, "generated-shared-prefix: shared prefix tokens")
      ->check(CLI::Range(0, 1 << 24))->group(d);
  reg.add("--gsp-question-len", o.gsp_question_len, "generated-shared-prefix: question tokens")
      ->check(CLI::Range(1, 1 << 24))->group(d);
  reg.add("--gsp-output-len", o.gsp_output_len, "generated-shared-prefix: output tokens")
      ->check(CLI::Range(1, 1 << 24))->group(d);
  reg.add("--gsp-range-ratio", o.gsp_range_ratio,
          "generated-shared-prefix: lengths uniform in [L*ratio, L]")
      ->check(CLI::Range(0.0, 1.0))->group(d);
  reg.add("--sharegpt-output-len", o.sharegpt_output_len,
          "sharegpt: output tokens for every request (instead of the reply's length)")
      ->check(CLI::Range(4, 1 << 24))->group(d);
  reg.add("--sharegpt-context-len", o.sharegpt_context_len,
          "sharegpt: drop pairs with more prompt + output tokens than this")
      ->check(CLI::Range(1, 1 << 30))->group(d);
  reg.add_flag("--tokenize-prompt", o.tokenize_prompt,
               "random: send token ids instead of text (sglang and openai backends)")->group(d);
  reg.add_flag("--disable-ignore-eos", o.disable_ignore_eos, "Let requests stop at EOS")->group(d);
  reg.add("--extra-request-body", o.extra_request_body,
          "JSON object merged into every request body")->group(d);

  const char* a = "Arrivals (online)";
  reg.add("--request-rate", o.request_rate_text, "Requests per second (Poisson), or inf")->group(a);
  reg.add("--max-concurrency", o.max_concurrency, "Requests in flight at most")
      ->check(CLI::Range(1, 1 << 24))->group(a);
  reg.add("--seed", o.seed, "Random seed")->group(a);
  reg.add("--warmup-requests", o.warmup_requests, "Requests sent before measuring")
      ->check(CLI::Range(0, 1 << 20))->group(a);
  reg.add_list("--goodput", o.goodput, "SLOs: ttft:MS tpot:MS e2e:MS")->group(a);

  const char* out = "Output";
  reg.add("--output-file", o.output_file, "Append one JSON line of results here")->group(out);
  reg.add("--tag", o.tag, "A label copied into the JSON line")->group(out);
  reg.add_flag("--output-details", o.output_details, "Add per-request arrays to the JSON line")->group(out);
  reg.add_flag("--disable-stream", o.disable_stream, "Non-streaming requests")->group(out);
  reg.add_flag("--disable-tqdm", o.disable_tqdm, "No progress bar")->group(out);

  const char* off = "Offline (--offline)";
  reg.add("--model-path", o.model_path, "Model (HF directory, GGUF file or dummy preset)")->group(off);
  reg.add("--load-format", o.load_format, "auto, gguf, safetensors or dummy")
      ->check(CLI::IsMember({"auto", "gguf", "safetensors", "dummy"}))->group(off);
  reg.add("--dtype", o.dtype, "auto, float32, float16, bfloat16")
      ->check(CLI::IsMember({"auto", "float32", "float16", "bfloat16"}))->group(off);
  reg.add("--batch-size", o.batch_size, "Sequences in the batch")->check(CLI::Range(1, 1 << 16))->group(off);
  reg.add("--input-len", o.input_len, "Prompt tokens per sequence")->check(CLI::Range(1, 1 << 24))->group(off);
  reg.add("--output-len", o.output_len, "Generated tokens per sequence")->check(CLI::Range(1, 1 << 24))->group(off);
  reg.add("--threads", o.threads, "CPU threads (0: all cores)")->check(CLI::Range(0, 4096))->group(off);
  reg.add("--repeat", o.repeat, "Measured repetitions")->check(CLI::Range(1, 1000))->group(off);
  reg.add("--save-gguf", o.save_gguf,
          "Advanced: write the loaded model (e.g. a dummy preset) as a GGUF file here, then exit")->group(off);

  const char* kv = "KV transfer (--kv-transfer)";
  reg.add("--total-bytes", o.total_bytes, "Bytes to move")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40))->group(kv);
  reg.add("--block-bytes", o.block_bytes, "Bytes of one (layer, page) block")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 32))->group(kv);
  reg.add("--kv-transports", o.kv_transports, "UCX_TLS for both processes (default: the environment's)")->group(kv);
  reg.add("--kv-error-mode", o.kv_error_mode,
          "UCX error handling: peer (detects dead peers; UCX 1.13 then cannot use posix/sysv) or none")
      ->check(CLI::IsMember({"peer", "none"}))->group(kv);
  reg.add("--kv-layout", o.kv_layout, "Destination blocks: scattered (no two adjacent) or contiguous (merge)")
      ->check(CLI::IsMember({"scattered", "contiguous"}))->group(kv);
  reg.add("--kv-blocks-per-write", o.kv_blocks_per_write, "Blocks per write (each write ends with a flush)")
      ->check(CLI::Range(1, 1 << 20))->group(kv);
  reg.add("--kv-inflight", o.kv_inflight, "Writes in flight")->check(CLI::Range(1, 4096))->group(kv);
  reg.add("--kv-max-put-bytes", o.kv_max_put_bytes, "Longest single put; longer runs are split")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40))->group(kv);
  reg.add("--kv-region-bytes", o.kv_region_bytes,
          "Each side's registered region; the run wraps around it (small: cache-resident, as ucx_perftest)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40))->group(kv);
  reg.add("--kv-perftest", o.kv_perftest, "ucx_perftest to run as the baseline (ucp_put_bw), or none")->group(kv);
}

}  // namespace pdctl::roles

#pragma once
// Flags of `pdctl bench`: the online serving benchmark (as sglang.bench_serving), the
// offline one-batch benchmark (--offline, as sglang.bench_one_batch) and the KV transfer
// benchmark (--kv-transfer, as nixlbench).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/options.h"

namespace pdctl::roles {

struct BenchOptions {
  // Which benchmark
  bool offline = false;
  bool kv_transfer = false;

  // Online: target
  std::string backend = "sglang";               // sglang | openai | openai-chat
  std::string base_url;                         // overrides host/port
  std::string host = "127.0.0.1";
  int port = 30000;
  std::string model;                            // model name sent in OpenAI requests
  std::string tokenizer;                        // tokenizer for prompt lengths (default: model_path)

  // Online: dataset
  std::string dataset_name = "random";          // random | random-ids | sharegpt | generated-shared-prefix
  std::string dataset_path;
  int num_prompts = 1000;
  int random_input_len = 1024;
  int random_output_len = 1024;
  double random_range_ratio = 0.0;
  int gsp_num_groups = 64;
  int gsp_prompts_per_group = 16;
  int gsp_system_prompt_len = 2048;
  int gsp_question_len = 128;
  int gsp_output_len = 256;
  double gsp_range_ratio = 1.0;                 // lengths uniform in [L*ratio, L] (1.0: fixed)
  std::optional<int> sharegpt_output_len;       // overrides ShareGPT's completion length
  std::optional<int> sharegpt_context_len;      // drops ShareGPT pairs longer than this
  bool tokenize_prompt = false;                 // random: send token ids instead of text
  bool disable_ignore_eos = false;
  std::string extra_request_body;               // JSON object merged into every request body

  // Online: arrivals
  double request_rate = -1;                     // requests/s (Poisson); -1 or inf: all at once
  std::string request_rate_text = "inf";
  std::optional<int> max_concurrency;
  int seed = 1;
  int warmup_requests = 1;
  std::vector<std::string> goodput;             // "ttft:MS" "tpot:MS" "e2e:MS"

  // Output
  std::string output_file;
  std::string tag;                              // copied into the JSONL record
  bool output_details = false;
  bool disable_stream = false;
  bool disable_tqdm = false;

  // Offline (and the model for online prompt lengths)
  std::string model_path;
  std::string load_format = "auto";
  std::string dtype = "auto";
  int batch_size = 1;
  int input_len = 512;
  int output_len = 128;
  int threads = 0;
  int repeat = 3;
  std::string save_gguf;                        // write the loaded model as GGUF to this path and exit

  // KV transfer
  int64_t total_bytes = int64_t{1} << 30;
  int64_t block_bytes = int64_t{256} << 10;
  std::string kv_transports;                    // UCX_TLS for both sides; empty: the environment's
  std::string kv_error_mode = "peer";           // peer | none (UCP error-handling mode)
  std::string kv_layout = "scattered";          // scattered | contiguous destinations
  int kv_blocks_per_write = 16;                 // blocks in one write (one flush)
  int kv_inflight = 4;                          // writes in flight
  int64_t kv_max_put_bytes = int64_t{1} << 20;  // split longer runs
  int64_t kv_region_bytes = int64_t{256} << 20; // each side's registered region (the run wraps)
  std::string kv_perftest = "ucx_perftest";     // baseline program, or "none"
};

void add_bench_flags(OptionRegistry& reg, BenchOptions& opts);

}  // namespace pdctl::roles

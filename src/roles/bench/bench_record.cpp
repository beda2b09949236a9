#include "roles/bench/bench_record.h"

#include <chrono>
#include <string>

namespace pdctl::roles {

Result<Backend> parse_backend(std::string_view name) {
  if (name == "sglang") return Backend::kSglang;
  if (name == "openai") return Backend::kOpenAI;
  if (name == "openai-chat") return Backend::kOpenAIChat;
  return Status::invalid_argument("unknown backend '" + std::string(name) +
                                  "' (sglang, openai or openai-chat)");
}

std::string_view backend_name(Backend backend) {
  switch (backend) {
    case Backend::kSglang: return "sglang";
    case Backend::kOpenAI: return "openai";
    case Backend::kOpenAIChat: return "openai-chat";
  }
  return "?";
}

double monotonic_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void RequestRecord::begin(int prompt_tokens, int max_new_tokens, double start, bool keep) {
  prompt_len = prompt_tokens;
  requested_output_len = max_new_tokens;
  start_s = start;
  keep_text = keep;
  finished = false;
  success = false;
  error.clear();
  ttft_s = 0;
  latency_s = 0;
  itl_s.clear();
  output_len = 0;
  generated_text.clear();
  generated_bytes = 0;
  got_line = false;
  got_token = false;
  last_token_s = 0;
  last_output_len = 0;
  reported_output_len.reset();
}

}  // namespace pdctl::roles

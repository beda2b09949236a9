#pragma once
// What the serving benchmark keeps of one request: sglang.bench_serving's
// RequestFuncOutput, plus the few fields its stream parsers carry between chunks. Times are
// seconds on one monotonic clock (the driver's, e.g. uv_hrtime() / 1e9); only differences
// are used. While a request streams, the only growth is one ITL entry per token (and the
// generated text, when kept).
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace pdctl::roles {

// Which API the requests go to (--backend).
enum class Backend {
  kSglang,      // POST /generate
  kOpenAI,      // POST /v1/completions
  kOpenAIChat,  // POST /v1/chat/completions
};

Result<Backend> parse_backend(std::string_view name);  // "sglang" | "openai" | "openai-chat"
std::string_view backend_name(Backend backend);

// Seconds on the monotonic clock (steady_clock), for drivers without one of their own.
double monotonic_seconds();

struct RequestRecord {
  // Set by begin(), before the request is sent.
  int prompt_len = 0;            // prompt tokens, from the dataset row
  int requested_output_len = 0;  // max new tokens asked for; the output length when the server reports none
  double start_s = 0;            // when the request was sent
  bool keep_text = true;         // keep generated_text (--output-details, retokenized count)

  // The outcome, final once `finished`.
  bool finished = false;
  bool success = false;
  std::string error;           // why it failed (empty on success)
  double ttft_s = 0;           // time to first token; 0 while none has come
  double latency_s = 0;        // end-to-end: until the last line of the response
  std::vector<double> itl_s;   // inter-token latencies (per chunk or per token, as sglang)
  int output_len = 0;          // generated tokens, server-reported where available
  std::string generated_text;  // when keep_text
  size_t generated_bytes = 0;  // UTF-8 bytes of the generated text, always

  // Carried between chunks by the parsers.
  bool got_line = false;        // any non-empty line arrived
  bool got_token = false;       // the first token arrived (sglang tests ttft == 0)
  double last_token_s = 0;      // when the previous token arrived
  int last_output_len = 0;      // sglang: completion_tokens at the previous token
  std::optional<int> reported_output_len;  // completion_tokens / usage seen so far

  // Clears the record for a new request sent at `start_s`, keeping buffer capacity.
  void begin(int prompt_tokens, int max_new_tokens, double start, bool keep = true);
};

}  // namespace pdctl::roles

#pragma once
// Reading a server's answer into a RequestRecord, as sglang.bench_serving's
// async_request_sglang_generate / async_request_openai_completions /
// async_request_openai_chat_completions do. Pure functions of (text, time): the driver
// calls them from its HTTP callbacks with the monotonic time it got each piece.
#include <span>
#include <string_view>

#include "roles/bench/bench_record.h"

namespace pdctl::roles {

// What one streamed payload did.
struct ChunkInfo {
  bool token = false;   // it carried generated output: counted for TTFT / ITL
  int new_tokens = 0;   // tokens it added (server-reported for sglang; 1 per chunk for OpenAI)
  bool done = false;    // "[DONE]"
  bool failed = false;  // an error payload or malformed JSON; rec.error says why, and the
                        // driver should stop reading this response
};

// One SSE `data:` payload (with or without its "data:" prefix; surrounding whitespace is
// ignored) received at `now_s`. Empty payloads are skipped as sglang skips empty lines, and
// so are SSE comments (": keep-alive"). After a failure the record ignores further
// payloads.
ChunkInfo on_stream_payload(Backend backend, std::string_view payload, double now_s,
                            RequestRecord& rec);

// The streamed response ended normally (status 200, body complete): settles success and
// output_len. A response with no line at all is a failure.
void finish_stream(RequestRecord& rec);

// A whole non-streaming (--disable-stream) response body received at `now_s`.
void on_full_response(Backend backend, std::string_view body, double now_s, RequestRecord& rec);

// The server answered with a status other than 200: error is "reason: body", as sglang.
void fail_http(RequestRecord& rec, int status, std::string_view reason, std::string_view body);

// The request failed without an answer (connect error, reset, timeout).
void fail_request(RequestRecord& rec, std::string_view error);

// After the warmup requests (the first row, min(output_len, 32) tokens, all at once): an
// error with the first one's message when none succeeded, as sglang stops there.
Status warmup_status(std::span<const RequestRecord> warmup);

}  // namespace pdctl::roles

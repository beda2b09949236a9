// Streamed and whole responses of each backend, as servers send them, read into a
// RequestRecord the way sglang.bench_serving reads them. Times are binary fractions so
// that the expected values are exact.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "roles/bench/bench_stream.h"

using namespace pdctl::roles;

namespace {

RequestRecord started(int prompt_len = 7, int max_new = 16, double t0 = 100.0) {
  RequestRecord r;
  r.begin(prompt_len, max_new, t0);
  return r;
}

}  // namespace

TEST_CASE("sglang /generate stream: cumulative text, server token counts, split ITLs") {
  // Recorded from an sglang server (ids shortened), one SSE event per line.
  const std::string c1 =
      R"(data: {"text":" Hello","output_ids":[22557],"meta_info":{"id":"9c1f","finish_reason":null,)"
      R"("prompt_tokens":7,"completion_tokens":1,"cached_tokens":0,"e2e_latency":0.21}})";
  const std::string c2 =
      R"(data: {"text":" Hello,","output_ids":[22557,11],"meta_info":{"id":"9c1f","finish_reason":null,)"
      R"("prompt_tokens":7,"completion_tokens":2,"cached_tokens":0}})";
  const std::string c3 =  // two tokens in one chunk
      R"(data: {"text":" Hello, w\u00f6rld","output_ids":[22557,11,1917,3],"meta_info":{"id":"9c1f",)"
      R"("finish_reason":{"type":"length","length":4},"prompt_tokens":7,"completion_tokens":4}})";
  const std::string same = R"(data: {"text":" Hello, w\u00f6rld","meta_info":{"completion_tokens":4}})";

  RequestRecord r = started();
  ChunkInfo i1 = on_stream_payload(Backend::kSglang, c1, 100.25, r);
  CHECK(i1.token);
  CHECK(i1.new_tokens == 1);
  CHECK(r.ttft_s == 0.25);
  CHECK(r.itl_s.empty());
  ChunkInfo i2 = on_stream_payload(Backend::kSglang, c2, 100.5, r);
  CHECK(i2.new_tokens == 1);
  CHECK(r.itl_s == std::vector<double>{0.25});
  ChunkInfo i3 = on_stream_payload(Backend::kSglang, c3, 101.0, r);
  CHECK(i3.new_tokens == 2);
  CHECK(r.itl_s == std::vector<double>{0.25, 0.25, 0.25});  // the 0.5 s gap split in two
  ChunkInfo i4 = on_stream_payload(Backend::kSglang, same, 101.125, r);
  CHECK_FALSE(i4.token);  // no new token: no ITL
  ChunkInfo done = on_stream_payload(Backend::kSglang, "data: [DONE]", 101.5, r);
  CHECK(done.done);
  CHECK(r.latency_s == 1.5);  // the last line, [DONE] included
  finish_stream(r);
  CHECK(r.success);
  CHECK(r.output_len == 4);  // meta_info.completion_tokens, not the 16 asked for
  CHECK(r.generated_text == " Hello, w\xc3\xb6rld");
  CHECK(r.generated_bytes == r.generated_text.size());
}

TEST_CASE("sglang: without kept text only the length is tracked") {
  RequestRecord r;
  r.begin(3, 8, 0.0, /*keep=*/false);
  on_stream_payload(Backend::kSglang, R"({"text":"ab\n","meta_info":{"completion_tokens":1}})", 0.5, r);
  finish_stream(r);
  CHECK(r.generated_text.empty());
  CHECK(r.generated_bytes == 3);
}

TEST_CASE("OpenAI completions stream: one ITL per chunk, usage from the final chunk") {
  const std::vector<std::string> chunks = {
      R"(data: {"id":"cmpl-1","object":"text_completion","created":1700000000,"model":"m",)"
      R"("choices":[{"index":0,"text":" The","logprobs":null,"finish_reason":null}],"usage":null})",
      R"(data: {"id":"cmpl-1","object":"text_completion","created":1700000000,"model":"m",)"
      R"("choices":[{"index":0,"text":" cat","logprobs":null,"finish_reason":null}],"usage":null})",
      R"(data: {"id":"cmpl-1","object":"text_completion","created":1700000000,"model":"m",)"
      R"("choices":[{"index":0,"text":" sat","logprobs":null,"finish_reason":"length"}],"usage":null})",
      R"(data: {"id":"cmpl-1","object":"text_completion","created":1700000000,"model":"m",)"
      R"("choices":[],"usage":{"prompt_tokens":7,"total_tokens":12,"completion_tokens":5}})",
      "data: [DONE]"};
  const double times[] = {100.5, 100.75, 101.25, 101.375, 101.5};
  RequestRecord r = started();
  int tokens = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    ChunkInfo info = on_stream_payload(Backend::kOpenAI, chunks[i], times[i], r);
    CHECK_FALSE(info.failed);
    tokens += info.token ? 1 : 0;
  }
  CHECK(tokens == 3);
  finish_stream(r);
  CHECK(r.success);
  CHECK(r.ttft_s == 0.5);
  CHECK(r.itl_s == std::vector<double>{0.25, 0.5});
  CHECK(r.latency_s == 1.5);
  CHECK(r.output_len == 5);  // usage.completion_tokens
  CHECK(r.generated_text == " The cat sat");
}

TEST_CASE("OpenAI completions stream without usage: the requested length counts") {
  RequestRecord r = started(7, 16);
  on_stream_payload(Backend::kOpenAI, R"({"choices":[{"index":0,"text":"x"}]})", 100.5, r);
  finish_stream(r);
  CHECK(r.output_len == 16);
}

TEST_CASE("OpenAI chat stream: delta.content, role-only and finish chunks carry no token") {
  const std::vector<std::string> chunks = {
      R"(data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":)"
      R"([{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null})",
      R"(data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":)"
      R"([{"index":0,"delta":{"content":"Hi"},"logprobs":null,"finish_reason":null}],"usage":null})",
      R"(data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":)"
      R"([{"index":0,"delta":{"content":" there"},"logprobs":null,"finish_reason":null}],"usage":null})",
      R"(data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":)"
      R"([{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null})",
      R"(data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],)"
      R"("usage":{"prompt_tokens":9,"total_tokens":12,"completion_tokens":3}})",
      "data: [DONE]"};
  const double times[] = {100.125, 100.25, 100.5, 100.625, 100.75, 100.875};
  RequestRecord r = started();
  for (size_t i = 0; i < chunks.size(); ++i) on_stream_payload(Backend::kOpenAIChat, chunks[i], times[i], r);
  finish_stream(r);
  CHECK(r.success);
  CHECK(r.ttft_s == 0.25);  // the role-only chunk at 0.125 is not a token
  CHECK(r.itl_s == std::vector<double>{0.25});
  CHECK(r.latency_s == 0.875);
  CHECK(r.output_len == 3);
  CHECK(r.generated_text == "Hi there");
}

TEST_CASE("error payloads and malformed chunks fail the request") {
  SUBCASE("OpenAI-style error object") {
    RequestRecord r = started();
    ChunkInfo info = on_stream_payload(
        Backend::kOpenAI,
        R"(data: {"error":{"message":"The server is overloaded","type":"ServiceUnavailable","code":503}})",
        100.5, r);
    CHECK(info.failed);
    CHECK_FALSE(r.success);
    CHECK(r.error.find("The server is overloaded") != std::string::npos);
    on_stream_payload(Backend::kOpenAI, R"({"choices":[{"text":"late"}]})", 100.75, r);
    finish_stream(r);  // stays failed
    CHECK_FALSE(r.success);
    CHECK(r.generated_text.empty());
  }
  SUBCASE("vLLM-style {\"object\": \"error\"}") {
    RequestRecord r = started();
    CHECK(on_stream_payload(Backend::kOpenAIChat,
                            R"({"object":"error","message":"max_tokens is too large","type":"BadRequestError","code":400})",
                            100.5, r).failed);
    CHECK(r.error == "server error: max_tokens is too large");
  }
  SUBCASE("sglang error in the stream") {
    RequestRecord r = started();
    CHECK(on_stream_payload(Backend::kSglang, R"(data: {"error": {"message": "aborted"}})", 100.5, r).failed);
    CHECK(r.error == "server error: aborted");
  }
  SUBCASE("truncated JSON") {
    RequestRecord r = started();
    ChunkInfo info = on_stream_payload(Backend::kSglang, R"(data: {"text":"a","meta_info":{"comp)", 100.5, r);
    CHECK(info.failed);
    CHECK(r.error.find("malformed chunk") != std::string::npos);
  }
  SUBCASE("a /generate chunk without completion_tokens") {
    RequestRecord r = started();
    CHECK(on_stream_payload(Backend::kSglang, R"({"text":"a"})", 100.5, r).failed);
  }
}

TEST_CASE("blank lines are skipped; an empty stream is a failure") {
  RequestRecord r = started();
  ChunkInfo info = on_stream_payload(Backend::kOpenAI, "   \r\n", 100.5, r);
  CHECK_FALSE(info.token);
  CHECK(r.latency_s == 0);
  finish_stream(r);
  CHECK_FALSE(r.success);
  CHECK(r.error == "empty response");
}

TEST_CASE("HTTP and transport failures") {
  RequestRecord r = started();
  fail_http(r, 503, "Service Unavailable", R"({"error":"busy"})");
  CHECK_FALSE(r.success);
  CHECK(r.finished);
  CHECK(r.error == R"(Service Unavailable: {"error":"busy"})");
  RequestRecord q = started();
  fail_http(q, 500, "", "oops");
  CHECK(q.error == "HTTP 500: oops");
  RequestRecord t = started();
  fail_request(t, "connection refused");
  CHECK(t.error == "connection refused");
}

TEST_CASE("non-streaming responses: TTFT is the whole latency") {
  SUBCASE("sglang") {
    RequestRecord r = started();
    on_full_response(Backend::kSglang,
                     R"({"text":"four token reply","output_ids":[1,2,3,4],"meta_info":{"completion_tokens":4}})",
                     102.0, r);
    CHECK(r.success);
    CHECK(r.ttft_s == 2.0);
    CHECK(r.latency_s == 2.0);
    CHECK(r.output_len == 4);
    CHECK(r.itl_s.empty());
    CHECK(r.generated_text == "four token reply");
  }
  SUBCASE("openai completions") {
    RequestRecord r = started();
    on_full_response(Backend::kOpenAI,
                     R"({"id":"cmpl-2","object":"text_completion","choices":[{"index":0,"text":" ok","finish_reason":"length"}],)"
                     R"("usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}})",
                     101.0, r);
    CHECK(r.success);
    CHECK(r.ttft_s == 1.0);
    CHECK(r.output_len == 2);
  }
  SUBCASE("openai chat without usage") {
    RequestRecord r = started(7, 16);
    on_full_response(Backend::kOpenAIChat,
                     R"({"choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}]})",
                     100.5, r);
    CHECK(r.success);
    CHECK(r.ttft_s == 0.5);
    CHECK(r.output_len == 16);
    CHECK(r.generated_text == "Hello!");
  }
  SUBCASE("an error body") {
    RequestRecord r = started();
    on_full_response(Backend::kOpenAI, R"({"error":{"message":"bad"}})", 100.5, r);
    CHECK_FALSE(r.success);
    CHECK(r.error == "server error: bad");
  }
}

TEST_CASE("begin() clears a reused record") {
  RequestRecord r = started();
  on_stream_payload(Backend::kOpenAI, R"({"choices":[{"text":"x"}]})", 100.5, r);
  on_stream_payload(Backend::kOpenAI, R"({"choices":[{"text":"y"}]})", 100.75, r);
  finish_stream(r);
  r.begin(1, 2, 200.0);
  CHECK_FALSE(r.finished);
  CHECK(r.itl_s.empty());
  CHECK(r.generated_text.empty());
  CHECK_FALSE(r.got_token);
  CHECK(r.requested_output_len == 2);
}

TEST_CASE("SSE comments are not chunks") {
  RequestRecord r = started();
  ChunkInfo info = on_stream_payload(Backend::kOpenAI, ": keep-alive", 100.5, r);
  CHECK_FALSE(info.failed);
  CHECK_FALSE(r.got_line);
}

TEST_CASE("warmup fails only when every warmup request failed") {
  std::vector<RequestRecord> w(2);
  w[0].begin(1, 1, 0);
  w[1].begin(1, 1, 0);
  fail_request(w[0], "connection refused");
  fail_request(w[1], "connection refused");
  pdctl::Status st = warmup_status(w);
  CHECK_FALSE(st.is_ok());
  CHECK(st.message() ==
        "Warmup failed - Please make sure benchmark arguments are correctly specified. Error: "
        "connection refused");
  w[1].begin(1, 1, 0);
  on_stream_payload(Backend::kOpenAI, R"({"choices":[{"text":"x"}]})", 0.5, w[1]);
  finish_stream(w[1]);
  CHECK(warmup_status(w).is_ok());
  CHECK(warmup_status({}).is_ok());
}

TEST_CASE("the monotonic clock does not go back") {
  double a = monotonic_seconds();
  double b = monotonic_seconds();
  CHECK(b >= a);
}

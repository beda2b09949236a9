// Request bodies per backend, parsed back and compared field by field.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "roles/bench/bench_request_body.h"

using namespace pdctl::roles;
using nlohmann::json;

namespace {

DatasetRow text_row(std::string prompt) {
  DatasetRow r;
  r.prompt = std::move(prompt);
  r.prompt_len = 3;
  r.output_len = 50;
  return r;
}

RequestBodyOptions opts_for(const std::string& backend, bool stream = true, bool ignore_eos = true) {
  BenchOptions o;
  o.backend = backend;
  o.model = "m1";
  o.disable_stream = !stream;
  o.disable_ignore_eos = !ignore_eos;
  auto r = request_body_options(o);
  REQUIRE(r.has_value());
  return *r;
}

}  // namespace

TEST_CASE("sglang /generate: text or input_ids, sampling_params, stream") {
  auto o = opts_for("sglang");
  CHECK(endpoint_path(o.backend) == "/generate");
  json b = json::parse(build_request_body(o, text_row("Hi \"there\"\n"), 50));
  CHECK(b == json::parse(R"({"text": "Hi \"there\"\n", "stream": true,
      "sampling_params": {"temperature": 0.0, "max_new_tokens": 50, "ignore_eos": true}})"));
  DatasetRow ids;
  ids.prompt_ids = {5, 6, 7};
  json c = json::parse(build_request_body(opts_for("sglang", false, false), ids, 8));
  CHECK(c == json::parse(R"({"input_ids": [5, 6, 7], "stream": false,
      "sampling_params": {"temperature": 0.0, "max_new_tokens": 8, "ignore_eos": false}})"));
}

TEST_CASE("openai /v1/completions asks for usage when streaming") {
  auto o = opts_for("openai");
  CHECK(endpoint_path(o.backend) == "/v1/completions");
  json b = json::parse(build_request_body(o, text_row("p"), 16));
  CHECK(b == json::parse(R"({"model": "m1", "prompt": "p", "temperature": 0.0, "max_tokens": 16,
      "ignore_eos": true, "stream": true, "stream_options": {"include_usage": true}})"));
  json c = json::parse(build_request_body(opts_for("openai", false), text_row("p"), 16));
  CHECK_FALSE(c.contains("stream_options"));
  CHECK(c["stream"] == false);
  DatasetRow ids;
  ids.prompt_ids = {1, 2};
  CHECK(json::parse(build_request_body(o, ids, 4))["prompt"] == json::array({1, 2}));
}

TEST_CASE("openai-chat /v1/chat/completions: one user message") {
  auto o = opts_for("openai-chat");
  CHECK(endpoint_path(o.backend) == "/v1/chat/completions");
  json b = json::parse(build_request_body(o, text_row("hello"), 7));
  CHECK(b == json::parse(R"({"model": "m1", "messages": [{"role": "user", "content": "hello"}],
      "temperature": 0.0, "max_tokens": 7, "ignore_eos": true, "stream": true,
      "stream_options": {"include_usage": true}})"));
}

TEST_CASE("--extra-request-body is merged at the top and wins") {
  BenchOptions o;
  o.backend = "openai";
  o.extra_request_body = R"({"temperature": 0.7, "top_p": 0.9})";
  auto r = request_body_options(o);
  REQUIRE(r.has_value());
  json b = json::parse(build_request_body(*r, text_row("x"), 4));
  CHECK(b["temperature"] == 0.7);
  CHECK(b["top_p"] == 0.9);
  for (const char* bad : {"[1]", "{", "3"}) {
    o.extra_request_body = bad;
    CHECK_FALSE(request_body_options(o).has_value());
  }
}

TEST_CASE("invalid UTF-8 in a decoded prompt does not break the body") {
  std::string body = build_request_body(opts_for("sglang"), text_row("ok\xff"), 4);
  CHECK(json::parse(body)["text"] == "ok\xef\xbf\xbd");
}

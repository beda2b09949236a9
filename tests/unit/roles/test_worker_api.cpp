// The worker API end to end over HTTP, in-process, on a fake engine: /generate, the
// OpenAI routes, the operational routes, and every error path with its status and an
// OpenAI error body (after which the server still answers /health).
#include <doctest/doctest.h>

#include <filesystem>
#include <set>

#include "test_worker_fixture.h"

using namespace workertest;

namespace {

std::string letters_text(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s.push_back(static_cast<char>(id - 3));
  return s;
}

}  // namespace

TEST_CASE("worker api: /health is 503 while loading, 200 when ready, 503 while draining") {
  WorkerFixture f({}, test_worker_options(), /*attach=*/false);
  error_message(f.get("/health"), 503);
  error_message(f.post("/generate", json{{"text", "a"}}), 503);
  error_message(f.get("/v1/models"), 503);
  f.attach();
  auto h = f.get("/health");
  CHECK(h.status == 200);
  CHECK(h.body.empty());
  f.lt.call([&] { f.api->begin_drain(); });
  error_message(f.get("/health"), 503);
  CHECK(error_message(f.post("/generate", json{{"text", "a"}}), 503).find("shutting down") != std::string::npos);
  CHECK(f.get("/get_load").status == 200);  // info routes still answer
}

TEST_CASE("worker api: /generate returns text, output_ids and SGLang's meta_info") {
  WorkerFixture f;
  auto r = f.post("/generate", json{{"text", "hi"}, {"sampling_params", {{"max_new_tokens", 5}, {"temperature", 0}}}});
  REQUIRE_MESSAGE(r.status == 200, r.body);
  CHECK(r.headers.get("Content-Type") == "application/json");
  json j = r.parsed();
  REQUIRE(j["output_ids"].size() == 5);
  std::vector<int32_t> ids = j["output_ids"];
  CHECK(j["text"] == letters_text(ids));
  const json& m = j["meta_info"];
  CHECK(m["id"].is_string());
  CHECK(m["finish_reason"] == json::parse(R"({"type": "length", "length": 5})"));
  CHECK(m["prompt_tokens"] == 3);  // BOS + 2 bytes
  CHECK(m["completion_tokens"] == 5);
  CHECK(m["cached_tokens"] == 0);
  CHECK(m["e2e_latency"].is_number());
  CHECK(f.engine->submitted().back().input_ids == engine::Tokenizer::byte_level().encode("hi", true));

  // The same prompt again: the prefix cache answers part of it.
  auto again = f.post("/generate", json{{"text", "hi"}, {"sampling_params", {{"max_new_tokens", 5}, {"temperature", 0}}}});
  CHECK(again.parsed()["meta_info"]["cached_tokens"].get<int>() > 0);
  CHECK(again.parsed()["output_ids"] == j["output_ids"]);

  // Ids in, with a stop token: finish_reason stop with the matched id, which is output.
  const int32_t third = ids[2];
  auto s = f.post("/generate", json{{"input_ids", engine::Tokenizer::byte_level().encode("hi", true)},
                                    {"sampling_params", {{"max_new_tokens", 5}, {"temperature", 0}, {"stop_token_ids", {third}}}}});
  REQUIRE(s.status == 200);
  json sj = s.parsed();
  CHECK(sj["meta_info"]["finish_reason"] == json{{"type", "stop"}, {"matched", third}});
  CHECK(sj["output_ids"] == json(std::vector<int32_t>(ids.begin(), ids.begin() + 3)));
  CHECK(sj["text"] == letters_text({ids[0], ids[1]}));
}

TEST_CASE("worker api: /generate batches return lists; n > 1 shares the prompt's prefix") {
  WorkerFixture f(manual_engine());
  std::optional<HttpReply> reply;
  std::thread client([&] {
    reply = f.post("/generate", json{{"text", {"ab", "cd"}}, {"sampling_params", {{"max_new_tokens", 3}, {"n", 2}}}});
  });
  // Only the first sample of each prompt is submitted until it produced its first token.
  REQUIRE(f.engine->wait_for([&] { return f.engine->submitted().size() == 2; }));
  CHECK(f.engine->live() == 2);
  f.engine->step();
  REQUIRE(f.engine->wait_for([&] { return f.engine->submitted().size() == 4; }));
  auto subs = f.engine->submitted();
  CHECK(subs[2].input_ids == subs[0].input_ids);
  f.engine->run_to_completion();
  client.join();
  REQUIRE(reply);
  REQUIRE_MESSAGE(reply->status == 200, reply->body);
  json j = reply->parsed();
  REQUIRE(j.is_array());
  REQUIRE(j.size() == 4);
  CHECK(j[0]["meta_info"]["id"] != j[1]["meta_info"]["id"]);
  // Sample 1 of a prompt found the prompt in the cache.
  CHECK(j[1]["meta_info"]["cached_tokens"].get<int>() > 0);
}

TEST_CASE("worker api: unseeded requests get a seed from their rid; explicit seeds are kept") {
  WorkerFixture f;
  REQUIRE(f.post("/v1/completions", json{{"prompt", "ab"}, {"max_tokens", 2}, {"n", 3}, {"rid", "c"}}).status == 200);
  REQUIRE(f.post("/generate", json{{"text", "ab"}, {"rid", "c-1"}, {"sampling_params", {{"max_new_tokens", 2}}}})
              .status == 200);
  REQUIRE(f.post("/generate", json{{"text", "ab"}, {"sampling_params", {{"max_new_tokens", 2}, {"sampling_seed", 5}}}})
              .status == 200);
  auto subs = f.engine->submitted();
  REQUIRE(subs.size() == 5);
  std::set<uint64_t> seeds;
  for (size_t i = 0; i < 3; ++i) {
    REQUIRE(subs[i].sampling.seed.has_value());
    seeds.insert(*subs[i].sampling.seed);
  }
  CHECK(seeds.size() == 3);  // the n samples differ
  // The same rid (here a sample's) draws alike; a seed the client gave is used as is.
  const auto by_rid = [&](const std::string& rid) {
    for (const auto& s : subs) {
      if (s.rid == rid) return s.sampling.seed;
    }
    return std::optional<uint64_t>();
  };
  CHECK(subs[3].sampling.seed == by_rid("c-1"));
  CHECK(subs[4].sampling.seed == std::optional<uint64_t>(5));
}

TEST_CASE("worker api: /v1/completions and usage; unknown model is 404 model_not_found") {
  WorkerFixture f;
  auto r = f.post("/v1/completions", json{{"model", "fake-model"}, {"prompt", "hi"}, {"max_tokens", 4}, {"n", 2}});
  REQUIRE_MESSAGE(r.status == 200, r.body);
  json j = r.parsed();
  CHECK(j["object"] == "text_completion");
  CHECK(j["id"].get<std::string>().rfind("cmpl-", 0) == 0);
  CHECK(j["model"] == "fake-model");
  CHECK(j["created"].is_number_integer());
  REQUIRE(j["choices"].size() == 2);
  CHECK(j["choices"][0]["index"] == 0);
  CHECK(j["choices"][1]["index"] == 1);
  CHECK(j["choices"][0]["text"].get<std::string>().size() == 4);
  CHECK(j["choices"][0]["finish_reason"] == "length");
  CHECK(j["choices"][0]["logprobs"].is_null());
  CHECK(j["usage"]["prompt_tokens"] == 3);  // counted once for the two samples
  CHECK(j["usage"]["completion_tokens"] == 8);
  CHECK(j["usage"]["total_tokens"] == 11);
  CHECK(j["usage"]["prompt_tokens_details"]["cached_tokens"].is_number());

  auto e = f.post("/v1/completions", json{{"model", "other"}, {"prompt", "hi"}});
  CHECK(error_message(e, 404).find("other") != std::string::npos);
  CHECK(e.parsed()["error"]["code"] == "model_not_found");
  CHECK(e.parsed()["error"]["param"] == "model");
  CHECK(f.get("/health").status == 200);

  // Stop strings are trimmed from the text, as OpenAI does; matched_stop says which (greedy:
  // the same tokens each time).
  auto plain = f.post("/v1/completions", json{{"prompt", "zz"}, {"max_tokens", 6}, {"temperature", 0}}).parsed();
  const std::string full = plain["choices"][0]["text"];
  const std::string stop = full.substr(3, 1);
  auto cut = f.post("/v1/completions", json{{"prompt", "zz"}, {"max_tokens", 6}, {"temperature", 0}, {"stop", stop}})
                 .parsed();
  const std::string expect = full.substr(0, full.find(stop));
  CHECK(cut["choices"][0]["text"] == expect);
  CHECK(cut["choices"][0]["finish_reason"] == "stop");
  CHECK(cut["choices"][0]["matched_stop"] == stop);
  auto kept = f.post("/v1/completions", json{{"prompt", "zz"},
                                             {"max_tokens", 6},
                                             {"temperature", 0},
                                             {"stop", stop},
                                             {"no_stop_trim", true}})
                  .parsed();
  CHECK(kept["choices"][0]["text"] == expect + stop);

  // logprobs: an int (alternatives per token).
  auto lp = f.post("/v1/completions", json{{"prompt", "hi"}, {"max_tokens", 2}, {"logprobs", 2}}).parsed();
  const json& l = lp["choices"][0]["logprobs"];
  CHECK(l["tokens"].size() == 2);
  CHECK(l["token_logprobs"].size() == 2);
  CHECK(l["top_logprobs"].size() == 2);
  CHECK(l["text_offset"] == json::array({0, 1}));
}

TEST_CASE("worker api: error statuses and bodies; the server stays healthy") {
  roles::WorkerOptions wo = test_worker_options();
  net::ServerOptions so;
  so.max_payload_size = 4096;
  WorkerFixture f({}, wo, true, so);
  CHECK(error_message(f.request("POST", "/generate", "{\"text\": "), 400).find("not valid JSON") != std::string::npos);
  CHECK(error_message(f.request("POST", "/v1/completions", "[1]"), 400).find("JSON object") != std::string::npos);
  CHECK(error_message(f.post("/v1/completions", json{{"prompt", "a"}, {"temperature", "x"}}), 400)
            .find("'temperature' must be a number") != std::string::npos);
  CHECK(error_message(f.post("/v1/completions", json{{"prompt", "a"}, {"max_tokens", -1}}), 400).find("max_tokens") !=
        std::string::npos);
  CHECK(error_message(f.post("/v1/completions", json{{"prompt", "a"}, {"max_tokens", 100000}}), 400)
            .find("maximum context length") != std::string::npos);
  error_message(f.get("/v1/nothing"), 404);
  error_message(f.get("/generate"), 405);
  error_message(f.post("/generate", json{{"text", std::string(8000, 'x')}}), 413);
  // Queue full at the engine: 429 with the rate-limit type.
  f.engine->fail_next_submit(Status::resource_exhausted("the queue is full (4 requests)"));
  auto q = f.post("/generate", json{{"text", "a"}});
  CHECK(error_message(q, 429).find("queue is full") != std::string::npos);
  CHECK(q.parsed()["error"]["type"] == "rate_limit_error");
  // Shutting down at the engine: 503.
  f.engine->fail_next_submit(Status::unavailable("shutting down"));
  error_message(f.post("/v1/chat/completions", json{{"messages", {{{"role", "user"}, {"content", "x"}}}}}), 400);
  error_message(f.post("/v1/completions", json{{"prompt", "a"}}), 503);
  // A duplicate live rid: 400.
  f.engine->hold(true);
  std::thread slow([&] { f.post("/generate", json{{"text", "a"}, {"rid", "dup"}}); });
  REQUIRE(f.engine->wait_for([&] { return f.engine->live() == 1; }));
  CHECK(error_message(f.post("/generate", json{{"text", "b"}, {"rid", "dup"}}), 400).find("dup") != std::string::npos);
  f.engine->hold(false);
  slow.join();
  CHECK(f.get("/health").status == 200);
  CHECK(f.post("/generate", json{{"text", "a"}}).status == 200);
}

TEST_CASE("worker api: an engine error ends the request with its status, or an error event mid-stream") {
  WorkerFixture f(manual_engine());
  std::optional<HttpReply> reply;
  std::thread client([&] { reply = f.post("/generate", json{{"text", "a"}, {"rid", "boom"}}); });
  REQUIRE(f.engine->wait_for([&] { return f.engine->live() == 1; }));
  f.engine->fail_request("boom", Status::internal("the forward pass failed"));
  f.engine->step();
  client.join();
  REQUIRE(reply);
  CHECK(error_message(*reply, 500).find("forward pass failed") != std::string::npos);

  std::optional<HttpReply> streamed;
  std::thread client2([&] {
    streamed = f.post("/generate", json{{"text", "a"}, {"rid", "boom2"}, {"stream", true}});
  });
  REQUIRE(f.engine->wait_for([&] { return f.engine->live() == 1; }));
  f.engine->step();  // one token goes out
  f.engine->fail_request("boom2", Status::internal("the forward pass failed"));
  f.engine->step();
  client2.join();
  REQUIRE(streamed);
  CHECK(streamed->status == 200);
  auto events = sse_json(streamed->body);
  REQUIRE(events.size() >= 2);
  CHECK(events.back()["error"]["message"] == "the forward pass failed");
}

TEST_CASE("worker api: api key on every route but /health") {
  roles::WorkerOptions wo = test_worker_options();
  wo.api_key = "sekret";
  WorkerFixture f({}, wo);
  CHECK(f.get("/health").status == 200);
  error_message(f.get("/v1/models"), 401);
  error_message(f.post("/generate", json{{"text", "a"}}), 401);
  error_message(f.get("/metrics"), 401);
  error_message(f.get("/get_server_info"), 401);
  CHECK(f.get("/v1/models", "Authorization: Bearer sekret\r\n").status == 200);
  CHECK(f.post("/generate", json{{"text", "a"}}, "Authorization: Bearer sekret\r\n").status == 200);
}

TEST_CASE("worker api: models, model info, server info, load, flush, abort, tokenize") {
  WorkerFixture f;
  json models = f.get("/v1/models").parsed();
  CHECK(models["object"] == "list");
  CHECK(models["data"][0]["id"] == "fake-model");
  CHECK(models["data"][0]["max_model_len"] == 256);
  CHECK(f.get("/v1/models/fake-model").parsed()["id"] == "fake-model");
  CHECK(error_message(f.get("/v1/models/nope"), 404).find("nope") != std::string::npos);

  json mi = f.get("/get_model_info").parsed();
  CHECK(mi["model_path"] == "fake-model");
  CHECK(mi["is_generation"] == true);
  CHECK(mi["tokenizer_path"] == "fake-model");

  f.post("/generate", json{{"text", "a"}});
  json si = f.get("/get_server_info").parsed();
  CHECK(si["model_path"] == "fake-model");
  CHECK(si["served_model_name"] == "fake-model");
  CHECK(si["version"].is_string());
  CHECK(si["internal_states"][0]["forward_seconds"].get<double>() > 0);
  CHECK(si["internal_states"][0]["forward_steps"].get<int>() > 0);
  CHECK(si["api_key"].is_null());

  json load = f.get("/get_load").parsed();
  REQUIRE(load.is_array());
  CHECK(load[0]["num_reqs"] == 0);
  CHECK(load[0]["num_waiting_reqs"] == 0);
  CHECK(load[0]["num_tokens"] == 0);

  auto fl = f.post("/flush_cache", json::object());
  CHECK(fl.status == 200);
  CHECK(fl.body.find("Cache flushed") != std::string::npos);
  CHECK(f.engine->flushes() == 1);
  CHECK(f.get("/flush_cache").status == 200);

  // A running request: flush refused (400, as SGLang); /abort_request ends it.
  f.engine->hold(true);
  std::optional<HttpReply> held;
  std::thread client([&] { held = f.post("/generate", json{{"text", "a"}, {"rid", "victim"}}); });
  REQUIRE(f.engine->wait_for([&] { return f.engine->live() == 1; }));
  CHECK(f.get("/get_load").parsed()[0]["num_reqs"] == 1);
  error_message(f.post("/flush_cache", json::object()), 400);
  error_message(f.post("/abort_request", json{{"rid", 5}}), 400);
  error_message(f.post("/abort_request", json::object()), 400);
  CHECK(f.post("/abort_request", json{{"rid", "victim"}}).status == 200);
  f.engine->hold(false);
  client.join();
  REQUIRE(held);
  REQUIRE(held->status == 200);
  CHECK(held->parsed()["meta_info"]["finish_reason"]["type"] == "abort");
  auto aborted = f.engine->aborted();
  CHECK(std::find(aborted.begin(), aborted.end(), "victim") != aborted.end());

  json tok = f.post("/v1/tokenize", json{{"prompt", "hey"}}).parsed();
  CHECK(tok["count"] == 4);
  CHECK(tok["max_model_len"] == 256);
  json detok = f.post("/detokenize", json{{"tokens", tok["tokens"]}}).parsed();
  CHECK(detok["text"] == "hey");
  CHECK(f.post("/tokenize", json{{"prompt", {"a", "bc"}}}).parsed()["count"] == json::array({2, 3}));
}

TEST_CASE("worker api: /metrics in Prometheus text with SGLang's names") {
  WorkerFixture f;
  for (int i = 0; i < 3; ++i) f.post("/generate", json{{"text", "ab"}, {"sampling_params", {{"max_new_tokens", 4}}}});
  auto m = f.get("/metrics");
  REQUIRE(m.status == 200);
  CHECK(m.headers.get("Content-Type").find("text/plain") == 0);
  const std::string& t = m.body;
  CHECK(t.find("sglang:num_requests_total{model_name=\"fake-model\"} 3") != std::string::npos);
  CHECK(t.find("sglang:prompt_tokens_total{model_name=\"fake-model\"} 9") != std::string::npos);
  CHECK(t.find("sglang:generation_tokens_total{model_name=\"fake-model\"} 12") != std::string::npos);
  CHECK(t.find("sglang:time_to_first_token_seconds_count{model_name=\"fake-model\"} 3") != std::string::npos);
  CHECK(t.find("sglang:inter_token_latency_seconds_count{model_name=\"fake-model\"} 9") != std::string::npos);
  CHECK(t.find("sglang:e2e_request_latency_seconds_bucket") != std::string::npos);
  CHECK(t.find("sglang:num_running_reqs{model_name=\"fake-model\"} 0") != std::string::npos);
  CHECK(t.find("sglang:num_queue_reqs{model_name=\"fake-model\"}") != std::string::npos);
  CHECK(t.find("sglang:token_usage{model_name=\"fake-model\"}") != std::string::npos);
  CHECK(t.find("sglang:cache_hit_rate{model_name=\"fake-model\"}") != std::string::npos);
  CHECK(t.find("pdctl:engine_forward_seconds_total{model_name=\"fake-model\"}") != std::string::npos);
}

TEST_CASE("worker api: /health_generate runs one token") {
  WorkerFixture f;
  CHECK(f.get("/health_generate").status == 200);
  auto subs = f.engine->submitted();
  REQUIRE_FALSE(subs.empty());
  CHECK(subs.back().sampling.max_new_tokens == 1);
  CHECK(subs.back().rid.rfind("HEALTH_CHECK_", 0) == 0);
  // Not counted as a request in the metrics.
  CHECK(f.get("/metrics").body.find("sglang:num_requests_total{model_name=\"fake-model\"} 0") != std::string::npos);
}

TEST_CASE("worker api: --skip-tokenizer-init serves ids in, ids out") {
  roles::WorkerOptions wo = test_worker_options();
  wo.skip_tokenizer_init = true;
  WorkerFixture f(engine_without_tokenizer(), wo);
  auto r = f.post("/generate", json{{"input_ids", {1, 5, 6}}, {"sampling_params", {{"max_new_tokens", 3}}}});
  REQUIRE_MESSAGE(r.status == 200, r.body);
  json j = r.parsed();
  CHECK_FALSE(j.contains("text"));
  CHECK(j["output_ids"].size() == 3);
  CHECK(error_message(f.post("/generate", json{{"text", "a"}}), 400).find("--skip-tokenizer-init") != std::string::npos);
  error_message(f.post("/v1/tokenize", json{{"prompt", "a"}}), 400);
  auto c = f.post("/v1/completions", json{{"prompt", {1, 5}}, {"max_tokens", 2}}).parsed();
  CHECK(c["choices"][0]["token_ids"].size() == 2);
  CHECK(f.get("/get_model_info").parsed()["tokenizer_path"].is_null());
}

TEST_CASE("worker api: chat completions with the model's template") {
  const std::string dir = std::string(PDCTL_SHARED_DIR) + "/tokenizers/llama3";
  if (!std::filesystem::exists(dir)) {
    MESSAGE("skipped: " << dir << " is absent");
    return;
  }
  auto tok = engine::Tokenizer::load(dir);
  REQUIRE(tok.has_value());
  const int32_t eot = *tok->token_to_id("<|eot_id|>");
  FakeEngineOptions eo;
  eo.tokenizer = *tok;
  eo.vocab_size = 128256;
  eo.context_length = 512;
  // " Hello there" then <|eot_id|>, which the template's end of turn makes an EOS.
  eo.script = [ids = tok->encode(" Hello there", false), eot](const engine::GenerateRequest&) {
    auto out = ids;
    out.push_back(eot);
    return out;
  };
  WorkerFixture f(std::move(eo));
  json msgs = {{{"role", "user"}, {"content", "Hi"}}};
  auto r = f.post("/v1/chat/completions", json{{"model", "fake-model"}, {"messages", msgs}});
  REQUIRE_MESSAGE(r.status == 200, r.body);
  json j = r.parsed();
  CHECK(j["object"] == "chat.completion");
  CHECK(j["id"].get<std::string>().rfind("chatcmpl-", 0) == 0);
  CHECK(j["choices"][0]["message"]["role"] == "assistant");
  CHECK(j["choices"][0]["message"]["content"] == " Hello there");
  CHECK(j["choices"][0]["finish_reason"] == "stop");
  CHECK(j["choices"][0]["matched_stop"] == eot);
  CHECK(j["usage"]["completion_tokens"] == 3);

  auto s = f.post("/v1/chat/completions",
                  json{{"messages", msgs}, {"stream", true}, {"stream_options", {{"include_usage", true}}}, {"logprobs", true}});
  REQUIRE(s.status == 200);
  CHECK(s.headers.get("Content-Type") == "text/event-stream");
  auto ev = sse_json(s.body);
  REQUIRE(ev.size() >= 4);
  CHECK(ev[0]["object"] == "chat.completion.chunk");
  CHECK(ev[0]["choices"][0]["delta"] == json::parse(R"({"role": "assistant", "content": ""})"));
  std::string content;
  size_t logprob_tokens = 0;
  for (size_t i = 1; i + 2 < ev.size(); ++i) {
    content += ev[i]["choices"][0]["delta"]["content"].get<std::string>();
    CHECK(ev[i]["choices"][0]["finish_reason"].is_null());
    CHECK(ev[i]["usage"].is_null());
    logprob_tokens += ev[i]["choices"][0]["logprobs"]["content"].size();
  }
  CHECK(content == " Hello there");
  CHECK(logprob_tokens == 3);  // the end-of-turn token is output too, with its logprob
  const json& fin = ev[ev.size() - 2];
  CHECK(fin["choices"][0]["delta"] == json::object());
  CHECK(fin["choices"][0]["finish_reason"] == "stop");
  const json& usage = ev.back();
  CHECK(usage["choices"] == json::array());
  CHECK(usage["usage"]["completion_tokens"] == 3);
  CHECK(usage["usage"]["prompt_tokens"].get<int>() > 5);
}

// Streaming through the worker API on a fake engine: SGLang's cumulative /generate events
// and OpenAI's delta chunks agree with the non-streamed replies; a client that goes away
// aborts its requests; a client that does not read costs bounded memory (its output is
// coalesced, not queued); concurrent requests get the same tokens as sequential ones.
#include <doctest/doctest.h>

#include <set>
#include <thread>

#include "test_worker_fixture.h"

using namespace workertest;

TEST_CASE("streaming: /generate events are cumulative and end as the non-streamed reply") {
  WorkerFixture f;
  const json body = {{"text", "stream me"}, {"sampling_params", {{"max_new_tokens", 8}, {"temperature", 0}}}};
  json whole = f.post("/generate", body).parsed();
  json sbody = body;
  sbody["stream"] = true;
  auto r = f.post("/generate", sbody);
  REQUIRE(r.status == 200);
  CHECK(r.headers.get("Content-Type") == "text/event-stream");
  auto ev = sse_json(r.body);
  REQUIRE_FALSE(ev.empty());
  size_t prev_ids = 0;
  for (const json& e : ev) {
    CHECK(e["output_ids"].size() >= prev_ids);  // cumulative
    prev_ids = e["output_ids"].size();
    CHECK(e["meta_info"]["completion_tokens"] == e["output_ids"].size());
    CHECK_FALSE(e.contains("index"));
  }
  for (size_t i = 0; i + 1 < ev.size(); ++i) CHECK(ev[i]["meta_info"]["finish_reason"].is_null());
  CHECK(ev.back()["text"] == whole["text"]);
  CHECK(ev.back()["output_ids"] == whole["output_ids"]);
  CHECK(ev.back()["meta_info"]["finish_reason"] == whole["meta_info"]["finish_reason"]);

  // A streamed batch: each event names its prompt.
  auto b = f.post("/generate", json{{"text", {"a", "b"}}, {"stream", true}, {"sampling_params", {{"max_new_tokens", 3}}}});
  std::set<int> seen;
  for (const json& e : sse_json(b.body)) seen.insert(e["index"].get<int>());
  CHECK(seen == std::set<int>{0, 1});
}

TEST_CASE("streaming: /v1/completions deltas add up to the non-streamed text; usage chunk last") {
  WorkerFixture f;
  const json body = {{"prompt", "abc"}, {"max_tokens", 7}, {"n", 2}, {"seed", 3}};
  json whole = f.post("/v1/completions", body).parsed();
  // Without a flush the streamed request would hit the prefix cache the first one filled and
  // report cached_tokens > 0; everything else in the usage must match, so compare from the same state.
  REQUIRE(f.post("/flush_cache", json::object()).status == 200);
  json sbody = body;
  sbody["stream"] = true;
  sbody["stream_options"] = {{"include_usage", true}};
  auto ev = sse_json(f.post("/v1/completions", sbody).body);
  std::string text[2];
  std::string finish[2];
  for (size_t i = 0; i + 1 < ev.size(); ++i) {
    const json& e = ev[i];
    CHECK(e["object"] == "text_completion");
    CHECK(e["id"] == ev[0]["id"]);
    CHECK(e.contains("usage"));
    CHECK(e["usage"].is_null());
    REQUIRE(e["choices"].size() == 1);
    const int idx = e["choices"][0]["index"];
    text[idx] += e["choices"][0]["text"].get<std::string>();
    if (!e["choices"][0]["finish_reason"].is_null()) finish[idx] = e["choices"][0]["finish_reason"];
  }
  CHECK(text[0] == whole["choices"][0]["text"]);
  CHECK(text[1] == whole["choices"][1]["text"]);
  CHECK(text[0] != text[1]);  // seeds 3 and 4
  CHECK(finish[0] == "length");
  CHECK(finish[1] == "length");
  CHECK(ev.back()["choices"] == json::array());
  CHECK(ev.back()["usage"] == whole["usage"]);

  // Without include_usage there is no usage field and no usage chunk.
  sbody.erase("stream_options");
  auto plain = sse_json(f.post("/v1/completions", sbody).body);
  for (const json& e : plain) {
    CHECK_FALSE(e.contains("usage"));
    CHECK(e["choices"].size() == 1);
  }
}

TEST_CASE("streaming: a client that disconnects mid-stream aborts its request and frees it") {
  WorkerFixture f(paced_engine(std::chrono::milliseconds(5), 4096));
  {
    nettest::RawClient c(f.port);
    std::string body = json{{"text", "x"}, {"rid", "leaver"}, {"stream", true},
                            {"sampling_params", {{"max_new_tokens", 2000}}}}
                           .dump();
    REQUIRE(c.send(nettest::post_request("/generate", body)));
    std::string got;
    while (got.find("data: ") == std::string::npos) REQUIRE(c.read_some(got) > 0);
    CHECK(f.engine->live() == 1);
  }  // the client closes its socket
  REQUIRE(f.engine->wait_for([&] { return f.engine->live() == 0; }));
  auto aborted = f.engine->aborted();
  CHECK(std::find(aborted.begin(), aborted.end(), "leaver") != aborted.end());
  json load = f.get("/get_load").parsed();
  CHECK(load[0]["num_reqs"] == 0);
  CHECK(load[0]["num_tokens"] == 0);
  CHECK(f.get("/health").status == 200);
  REQUIRE(f.engine->wait_for([&] { return f.lt.call([&] { return f.api->dispatcher().live_calls(); }) == 0; }));
}

TEST_CASE("streaming: a client that does not read gets its output coalesced, not queued") {
  net::ServerOptions so;
  so.write_high_water = 2048;  // pause early
  FakeEngineOptions eo;
  eo.context_length = 8192;
  eo.tokens_per_chunk = 1;
  WorkerFixture f(std::move(eo), test_worker_options(), true, so);
  const int kTokens = 3000;
  nettest::RawClient c(f.port);
  c.set_recv_buffer(4096);
  std::string body = json{{"prompt", "q"}, {"stream", true}, {"max_tokens", kTokens}, {"temperature", 0}}.dump();
  REQUIRE(c.send(nettest::post_request("/v1/completions", body)));
  // The engine finishes while the client reads nothing.
  REQUIRE(f.engine->wait_for([&] { return f.engine->live() == 0; }));
  nettest::RawResponse r = c.read_response();
  REQUIRE(r.complete);
  auto ev = sse_json(r.body);
  std::string text;
  for (const json& e : ev) text += e["choices"][0]["text"].get<std::string>();
  CHECK(text.size() == static_cast<size_t>(kTokens));
  // Far fewer events than chunks: what arrived while paused went out as one event.
  CHECK(ev.size() < static_cast<size_t>(kTokens) / 2);
  MESSAGE(kTokens << " engine chunks, " << ev.size() << " events");
  json whole = f.post("/v1/completions", json{{"prompt", "q"}, {"max_tokens", kTokens}, {"temperature", 0}}).parsed();
  CHECK(text == whole["choices"][0]["text"]);
}

TEST_CASE("streaming: 32 concurrent requests give the same tokens as one at a time") {
  WorkerFixture f(paced_engine(std::chrono::milliseconds(1)));
  auto body = [](int i) {
    return json{{"text", "prompt " + std::to_string(i)},
                {"stream", i % 2 == 0},
                {"sampling_params", {{"max_new_tokens", 12}, {"temperature", 0}}}};
  };
  auto final_ids = [](const HttpReply& r, bool stream) {
    if (!stream) return r.parsed()["output_ids"];
    return sse_json(r.body).back()["output_ids"];
  };
  std::vector<json> sequential;
  for (int i = 0; i < 32; ++i) sequential.push_back(final_ids(f.post("/generate", body(i)), i % 2 == 0));
  std::vector<json> concurrent(32);
  std::vector<std::thread> threads;
  for (int i = 0; i < 32; ++i) {
    threads.emplace_back([&, i] { concurrent[i] = final_ids(f.post("/generate", body(i)), i % 2 == 0); });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 32; ++i) CHECK(concurrent[i] == sequential[i]);
}

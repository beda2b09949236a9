// The engine as a service on stories260K: greedy outputs equal llama.cpp's goldens however
// requests are batched, chunked, cached or preempted.
#include "test_engine_service_util.h"

using namespace pdctl;
using namespace pdctl::engine;
using namespace pdctl::engine::test;

namespace {

// Submits the rows (row i % 6 for i < n) all at once and checks every output.
void check_together(EngineService& e, int n, bool with_text, const std::string& tag) {
  const auto& rows = golden_rows();
  Collector col;
  std::vector<std::string> rids;
  for (int i = 0; i < n; ++i) {
    rids.push_back(rid_of(tag, i));
    submit_ok(e, greedy_request(rids.back(), rows[static_cast<size_t>(i) % rows.size()].prompt_tokens), col.sink(rids.back()));
  }
  REQUIRE(col.wait(rids));
  for (int i = 0; i < n; ++i) {
    const GoldenRow& g = rows[static_cast<size_t>(i) % rows.size()];
    const Collected c = col.get(rids[static_cast<size_t>(i)]);
    INFO(tag << " request " << i);
    CHECK(c.tokens == g.completion);
    CHECK(c.finish.type == FinishInfo::Type::kLength);
    CHECK(c.finished_chunks == 1);
    CHECK(c.chunks_after_finish == 0);
    if (with_text) CHECK(c.text == g.text);
  }
}

void wait_idle_load(EngineService& e) {
  // The final chunk is sent after the pages are back, so this holds at once.
  const EngineLoad l = e.load();
  CHECK(l.running_requests == 0);
  CHECK(l.queued_requests == 0);
  CHECK(l.tokens_in_use == 0);
}

}  // namespace

TEST_CASE("engine service: golden rows one at a time, all at once, and 32 concurrent, GGUF and HF") {
  if (!have_stories()) return;
  const auto& rows = golden_rows();
  REQUIRE(rows.size() == 6);
  for (const bool gguf : {true, false}) {
    EngineSetup s;
    if (!gguf) {
      s.model = "models/stories260K-hf";
      s.tokenizer = false;
    }
    auto e = start_engine(s);
    CAPTURE(s.model);
    Collector col;
    for (size_t i = 0; i < rows.size(); ++i) {  // one at a time; streamed chunks add up to the text
      const std::string rid = rid_of("seq", i);
      submit_ok(*e, greedy_request(rid, rows[i].prompt_tokens), col.sink(rid));
      REQUIRE(col.wait(rid));
      const Collected c = col.get(rid);
      CHECK(c.tokens == rows[i].completion);
      CHECK(c.prompt_tokens == static_cast<int>(rows[i].prompt_tokens.size()));
      CHECK(c.completion_tokens == 64);
      CHECK(c.chunks == 64);  // one per token, the last one finished
      if (gguf) {
        CHECK(c.text == rows[i].text);
      } else {
        CHECK(c.text.empty());  // no tokenizer: ids only
      }
      wait_idle_load(*e);
    }
    check_together(*e, 6, gguf, "six");
    check_together(*e, 32, gguf, "many");
    wait_idle_load(*e);
    const EngineCounters k = e->counters();
    CHECK(k.requests_finished == 6 + 6 + 32);
    CHECK(k.generated_tokens == 64 * (6 + 6 + 32));
    CHECK(k.forward_steps > 0);
    CHECK(k.forward_seconds > 0);
  }
}

TEST_CASE("engine service: chunked prefill of 1, 7 and 64 tokens, mixed with decodes, same tokens") {
  if (!have_stories()) return;
  for (int chunk : {1, 7, 64}) {
    EngineSetup s;
    s.options.chunked_prefill_size = chunk;
    s.options.max_prefill_tokens = chunk == 1 ? 3 : 16;  // prompts also wait for each other
    s.options.disable_radix_cache = true;                // every prompt is computed in chunks
    s.page_size = 4;
    auto e = start_engine(s);
    CAPTURE(chunk);
    check_together(*e, 12, true, rid_of("chunk", chunk) + "_");
  }
}

TEST_CASE("engine service: a repeated prompt is served from the prefix cache with the same output") {
  if (!have_stories()) return;
  const auto& rows = golden_rows();
  EngineSetup s;
  s.page_size = 4;
  auto e = start_engine(s);
  Collector col;
  const GoldenRow& g = rows[2];  // 14 prompt tokens: 3 whole pages of 4 (the last token is always computed)
  submit_ok(*e, greedy_request("first", g.prompt_tokens), col.sink("first"));
  REQUIRE(col.wait("first"));
  CHECK(col.get("first").cached_tokens == 0);
  CHECK(e->load().cached_tokens > 0);  // the finished request's pages stay in the cache
  CHECK(e->load().tokens_in_use == 0);

  submit_ok(*e, greedy_request("again", g.prompt_tokens), col.sink("again"));
  REQUIRE(col.wait("again"));
  Collected c = col.get("again");
  CHECK(c.cached_tokens == 12);
  CHECK(c.tokens == g.completion);
  CHECK(c.text == g.text);

  // A prompt that extends the cached one (the prompt and the first 20 generated tokens): the
  // cached prefix covers all of it but the last page; the output continues the golden one.
  std::vector<int32_t> longer = g.prompt_tokens;
  longer.insert(longer.end(), g.completion.begin(), g.completion.begin() + 20);
  submit_ok(*e, greedy_request("longer", longer, 44), col.sink("longer"));
  REQUIRE(col.wait("longer"));
  c = col.get("longer");
  CHECK(c.cached_tokens == (static_cast<int>(longer.size()) - 1) / 4 * 4);
  CHECK(c.tokens == std::vector<int32_t>(g.completion.begin() + 20, g.completion.end()));

  const EngineCounters k = e->counters();
  CHECK(k.cache_hit_tokens == static_cast<uint64_t>(12 + c.cached_tokens));
  CHECK(k.cache_query_tokens == 2 * g.prompt_tokens.size() + longer.size());

  // Many requests for the same prompt at once share its pages as soon as one has them.
  check_together(*e, 12, true, "shared");
  wait_idle_load(*e);

  // Flushing empties it; the next run computes everything again, with the same output.
  std::mutex mu;
  std::condition_variable cv;
  std::optional<Status> flushed;
  e->flush_cache([&](Status st) {
    std::lock_guard lk(mu);
    flushed = std::move(st);
    cv.notify_all();
  });
  {
    std::unique_lock lk(mu);
    REQUIRE(cv.wait_for(lk, kWait, [&] { return flushed.has_value(); }));
  }
  CHECK(flushed->is_ok());
  CHECK(e->load().cached_tokens == 0);
  submit_ok(*e, greedy_request("after_flush", g.prompt_tokens), col.sink("after_flush"));
  REQUIRE(col.wait("after_flush"));
  CHECK(col.get("after_flush").cached_tokens == 0);
  CHECK(col.get("after_flush").tokens == g.completion);
}

TEST_CASE("engine service: with the radix cache disabled nothing is cached") {
  if (!have_stories()) return;
  EngineSetup s;
  s.page_size = 4;
  s.options.disable_radix_cache = true;
  auto e = start_engine(s);
  check_together(*e, 12, true, "nocache");
  CHECK(e->load().cached_tokens == 0);
  CHECK(e->counters().cache_hit_tokens == 0);
  wait_idle_load(*e);
}

TEST_CASE("engine service: preemption under a tiny KV pool still gives the golden tokens") {
  if (!have_stories()) return;
  // 12 requests of up to 14 + 63 tokens of K/V each in a pool of 256 tokens: admission lets
  // several run, their decodes outgrow the pool and the youngest are preempted, queued
  // again at the front, and recompute their prompt and output so far.
  struct Case {
    int page_size;
    bool cache;
  };
  for (const Case k : {Case{16, false}, Case{4, true}}) {
    EngineSetup s;
    s.page_size = k.page_size;
    s.max_total_tokens = 256;
    s.options.disable_radix_cache = !k.cache;
    auto e = start_engine(s);
    CAPTURE(k.page_size);
    check_together(*e, 12, true, "tiny");
    CHECK(e->counters().requests_retracted > 0);
    wait_idle_load(*e);
  }
}

// Not a test (skipped unless run with --no-skip): prints how much of the wall time of a
// batch goes to the engine outside forward(). Speed is never asserted.
//   build/tests/unit_engine -tc='engine service: overhead report*' --no-skip
TEST_CASE("engine service: overhead report (benchmark, prints only)" * doctest::skip()) {
  if (!have_stories()) return;
  for (const int n : {1, 8, 32, 64}) {
    for (const bool text : {false, true}) {
      EngineSetup s;
      s.max_total_tokens = 16384;
      auto e = start_engine(s);
      // The engine thread waits in the first request's sink until everything is submitted,
      // so the batch is whole from its first step and the test thread is idle meanwhile.
      Gate go, holding, done;
      submit_ok(*e, greedy_request("hold", golden_rows()[0].prompt_tokens, 1), [&](OutputChunk&&) {
        holding.open();
        CHECK(go.wait());
      });
      REQUIRE(holding.wait());
      std::atomic<int> left{n};
      for (int i = 0; i < n; ++i) {
        GenerateRequest r = greedy_request(rid_of("m", i), golden_rows()[static_cast<size_t>(i) % 6].prompt_tokens, 200);
        r.detokenize = text;
        if (text) r.stop = {"zebra"};
        submit_ok(*e, std::move(r), [&](OutputChunk&& c) {
          if (c.finished && left.fetch_sub(1) == 1) done.open();
        });
      }
      const EngineCounters k0 = e->counters();
      const auto t0 = std::chrono::steady_clock::now();
      go.open();
      REQUIRE(done.wait());
      const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const EngineCounters k = e->counters();
      const double fwd = k.forward_seconds - k0.forward_seconds;
      const double steps = static_cast<double>(k.forward_steps - k0.forward_steps);
      MESSAGE("batch " << n << std::string(text ? ", text + stop string" : ", ids only") << ": " << steps << " steps, wall "
                       << wall * 1e3 << " ms, forward " << fwd * 1e3 << " ms, outside forward "
                       << (wall - fwd) / steps * 1e6 << " us/step = " << (wall - fwd) / (n * 200.0) * 1e6
                       << " us/token (" << 100 * (wall - fwd) / wall << "%)");
    }
  }
}

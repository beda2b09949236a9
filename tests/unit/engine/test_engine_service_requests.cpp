// The engine as a service, request by request: stop strings and tokens, lengths, logprobs,
// aborts, admission errors and shutdown.
#include "test_engine_service_util.h"

using namespace pdctl;
using namespace pdctl::engine;
using namespace pdctl::engine::test;

namespace {

Collected run_one(EngineService& e, GenerateRequest r) {
  Collector col;
  const std::string rid = r.rid;
  submit_ok(e, std::move(r), col.sink(rid));
  REQUIRE(col.wait(rid));
  Collected c = col.get(rid);
  CHECK(c.finished_chunks == 1);
  CHECK(c.chunks_after_finish == 0);
  return c;
}

}  // namespace

TEST_CASE("engine service: stop strings end the text before them, held back while they may still match") {
  if (!have_stories()) return;
  auto e = start_engine({});
  const Tokenizer& tok = *e->tokenizer();
  const GoldenRow& g = golden_rows()[0];
  // ", there was a little girl named Lily. She loved ... in the park. One day, ...\nLily's mom said"
  struct Case {
    std::vector<std::string> stop;
    std::string matched;
  };
  for (const Case& k : {Case{{"Lily"}, "Lily"}, Case{{"park", "girl"}, "girl"}, Case{{"Lily's mom"}, "Lily's mom"},
                        Case{{" day,"}, " day,"}}) {
    CAPTURE(k.matched);
    const size_t pos = g.text.find(k.matched);
    REQUIRE(pos != std::string::npos);
    GenerateRequest r = greedy_request("stop", g.prompt_tokens);
    r.stop = k.stop;
    Collected c = run_one(*e, r);
    CHECK(c.finish.type == FinishInfo::Type::kStop);
    REQUIRE(std::holds_alternative<std::string>(c.finish.matched));
    CHECK(std::get<std::string>(c.finish.matched) == k.matched);
    CHECK(c.text == g.text.substr(0, pos));
    // The tokens run to the one that completed the stop string, and they are the golden ones.
    REQUIRE(c.tokens.size() <= g.completion.size());
    CHECK(std::equal(c.tokens.begin(), c.tokens.end(), g.completion.begin()));
    const std::string decoded = tok.decode(c.tokens, true);
    CHECK(decoded.find(k.matched) != std::string::npos);
    std::vector<int32_t> shorter(c.tokens.begin(), c.tokens.end() - 1);
    CHECK(tok.decode(shorter, true).find(k.matched) == std::string::npos);
    CHECK(c.completion_tokens == static_cast<int>(c.tokens.size()));
    // No chunk ever sent text that the stop string later took back.
    std::string sent;
    for (const std::string& t : c.text_chunks) sent += t;
    CHECK(sent == c.text);

    r.no_stop_trim = true;  // everything decoded up to the match, stop string included
    Collected kept = run_one(*e, r);
    CHECK(kept.tokens == c.tokens);
    CHECK(kept.text == decoded);
  }
  // A stop string that never appears changes nothing.
  GenerateRequest r = greedy_request("nostop", g.prompt_tokens);
  r.stop = {"zebra", "Lily's dad"};
  Collected c = run_one(*e, r);
  CHECK(c.finish.type == FinishInfo::Type::kLength);
  CHECK(c.text == g.text);
  CHECK(c.tokens == g.completion);
}

TEST_CASE("engine service: stop token ids, EOS and ignore_eos, max_new_tokens") {
  if (!have_stories()) return;
  auto e = start_engine({});
  const Tokenizer& tok = *e->tokenizer();
  const GoldenRow& g = golden_rows()[0];
  const int32_t stop_id = g.completion[10];
  const size_t first = static_cast<size_t>(std::find(g.completion.begin(), g.completion.end(), stop_id) - g.completion.begin());
  GenerateRequest r = greedy_request("stopid", g.prompt_tokens);
  r.sampling.stop_token_ids = {stop_id};
  Collected c = run_one(*e, r);
  CHECK(c.finish.type == FinishInfo::Type::kStop);
  REQUIRE(std::holds_alternative<int32_t>(c.finish.matched));
  CHECK(std::get<int32_t>(c.finish.matched) == stop_id);
  const std::vector<int32_t> expect(g.completion.begin(), g.completion.begin() + static_cast<std::ptrdiff_t>(first) + 1);
  CHECK(c.tokens == expect);  // the stop token is in the ids ...
  const std::vector<int32_t> before(expect.begin(), expect.end() - 1);
  CHECK(c.text == tok.decode(before, true));  // ... but its text is not, unless no_stop_trim
  r.no_stop_trim = true;
  c = run_one(*e, r);
  CHECK(c.text == tok.decode(expect, true));

  // EOS: the stories never reach id 2, so the tokenizer gets one more EOS id, which ends
  // generation like a stop token -- unless ignore_eos.
  {
    EngineSetup s;
    s.extra_eos = {stop_id};
    auto eos_engine = start_engine(s);
    GenerateRequest q = greedy_request("eos", g.prompt_tokens);
    Collected eos = run_one(*eos_engine, q);
    CHECK(eos.finish.type == FinishInfo::Type::kStop);
    REQUIRE(std::holds_alternative<int32_t>(eos.finish.matched));
    CHECK(std::get<int32_t>(eos.finish.matched) == stop_id);
    CHECK(eos.tokens == expect);
    CHECK(eos.text == tok.decode(before, true));
    q.sampling.ignore_eos = true;
    eos = run_one(*eos_engine, q);
    CHECK(eos.finish.type == FinishInfo::Type::kLength);
    CHECK(eos.tokens == g.completion);
    CHECK(eos.text == g.text);
    q.sampling.stop_token_ids = {stop_id};  // stop ids apply even with ignore_eos
    eos = run_one(*eos_engine, q);
    CHECK(eos.tokens == expect);
  }

  r = greedy_request("length", g.prompt_tokens, 5);
  c = run_one(*e, r);
  CHECK(c.finish.type == FinishInfo::Type::kLength);
  CHECK(c.tokens == std::vector<int32_t>(g.completion.begin(), g.completion.begin() + 5));
  CHECK(c.text == tok.decode(c.tokens, true));

  r = greedy_request("zero", g.prompt_tokens, 0);  // the prompt only
  r.logprob_start_len = 0;
  c = run_one(*e, r);
  CHECK(c.finish.type == FinishInfo::Type::kLength);
  CHECK(c.tokens.empty());
  CHECK(c.input_logprobs.size() == g.prompt_tokens.size());
}

TEST_CASE("engine service: logprobs of output tokens and of the prompt from logprob_start_len, chunked or not") {
  if (!have_stories()) return;
  const GoldenRow& g = golden_rows()[2];  // 14 prompt tokens
  std::vector<std::vector<TokenLogprobInfo>> inputs;
  for (int chunk : {-1, 3}) {
    EngineSetup s;
    s.options.chunked_prefill_size = chunk;
    s.page_size = 4;
    auto e = start_engine(s);
    for (int start : {0, 5}) {
      CAPTURE(chunk);
      CAPTURE(start);
      GenerateRequest r = greedy_request("lp", g.prompt_tokens, 8);
      r.sampling.return_logprob = true;
      r.sampling.top_logprobs_num = 3;
      r.logprob_start_len = start;
      Collected c = run_one(*e, r);
      CHECK(c.tokens == std::vector<int32_t>(g.completion.begin(), g.completion.begin() + 8));
      REQUIRE(c.logprobs.size() == 8);
      for (size_t i = 0; i < 8; ++i) {
        CHECK(c.logprobs[i].token == c.tokens[i]);
        REQUIRE(c.logprobs[i].top.size() == 3);
        CHECK(c.logprobs[i].top[0].token == c.tokens[i]);  // greedy: the most likely one
        CHECK(c.logprobs[i].logprob == doctest::Approx(c.logprobs[i].top[0].logprob));
        CHECK(c.logprobs[i].top[0].logprob >= c.logprobs[i].top[1].logprob);
        CHECK(c.logprobs[i].top[1].logprob >= c.logprobs[i].top[2].logprob);
        CHECK(c.logprobs[i].logprob <= 0);
      }
      REQUIRE(c.input_logprobs.size() == g.prompt_tokens.size() - static_cast<size_t>(start));
      for (size_t i = 0; i < c.input_logprobs.size(); ++i) {
        CHECK(c.input_logprobs[i].token == g.prompt_tokens[i + static_cast<size_t>(start)]);
        if (i + static_cast<size_t>(start) == 0) {
          CHECK(c.input_logprobs[i].logprob == 0);  // the first prompt token has none
          CHECK(c.input_logprobs[i].top.empty());
        } else {
          CHECK(c.input_logprobs[i].logprob < 0);
          REQUIRE(c.input_logprobs[i].top.size() == 3);
          CHECK(c.input_logprobs[i].top[0].logprob >= c.input_logprobs[i].logprob);
        }
      }
      if (start == 0) inputs.push_back(c.input_logprobs);
      // A second run finds the prompt cached, yet the logprobs still need every row.
      Collected again = run_one(*e, r);
      REQUIRE(again.input_logprobs.size() == c.input_logprobs.size());
      for (size_t i = 0; i < c.input_logprobs.size(); ++i) {
        CHECK(again.input_logprobs[i].logprob == doctest::Approx(c.input_logprobs[i].logprob).epsilon(1e-4));
      }
    }
  }
  REQUIRE(inputs.size() == 2);
  for (size_t i = 0; i < inputs[0].size(); ++i) {  // chunking changes nothing
    CHECK(inputs[0][i].logprob == doctest::Approx(inputs[1][i].logprob).epsilon(1e-4));
  }
  // Without return_logprob there are none.
  auto e = start_engine({});
  Collected c = run_one(*e, greedy_request("none", g.prompt_tokens, 4));
  CHECK(c.logprobs.empty());
  CHECK(c.input_logprobs.empty());
}

TEST_CASE("engine service: abort frees the pages within a step and sends the abort chunk") {
  if (!have_stories()) return;
  for (const bool cache : {true, false}) {
    EngineSetup s;
    s.page_size = 4;
    s.options.disable_radix_cache = !cache;
    s.options.max_running_requests = 1;
    auto e = start_engine(s);
    CAPTURE(cache);
    const GoldenRow& g = golden_rows()[0];
    Collector col;
    // The running request aborts itself from its first chunk (on the engine thread), so the
    // abort lands before its second token. The queued one is aborted before it ever runs.
    EngineService* svc = e.get();
    submit_ok(*e, greedy_request("running", g.prompt_tokens, 400), col.sink("running", [svc](const OutputChunk& c) {
      if (!c.finished && c.completion_tokens == 1) svc->abort("running", "client gone");
    }));
    submit_ok(*e, greedy_request("queued", g.prompt_tokens, 400), col.sink("queued"));
    e->abort("queued", "changed my mind");
    REQUIRE(col.wait(std::vector<std::string>{"running", "queued"}));
    Collected r = col.get("running"), q = col.get("queued");
    CHECK(r.finish.type == FinishInfo::Type::kAbort);
    CHECK(r.finish.message == "client gone");
    CHECK(r.finish.abort_code == Errc::kCancelled);
    CHECK(r.tokens.size() == 1);
    CHECK(q.finish.type == FinishInfo::Type::kAbort);
    CHECK(q.tokens.empty());
    CHECK(q.chunks == 1);
    const EngineLoad l = e->load();
    CHECK(l.tokens_in_use == 0);
    CHECK(l.running_requests == 0);
    CHECK(l.queued_requests == 0);
    CHECK(e->counters().requests_aborted == 2);
    e->abort("running");  // unknown by now: ignored
    // The rid is free again.
    Collected again = run_one(*e, greedy_request("running", g.prompt_tokens, 3));
    CHECK(again.tokens.size() == 3);
  }
}

TEST_CASE("engine service: a full queue refuses with kResourceExhausted, invalid requests are refused") {
  if (!have_stories()) return;
  EngineSetup s;
  s.options.max_queued_requests = 2;
  s.max_total_tokens = 256;  // less than the context of 512
  auto e = start_engine(s);
  const GoldenRow& g = golden_rows()[0];
  Collector col;
  Gate gate, held;
  // The first request's first chunk holds the engine thread, so what comes next stays queued.
  submit_ok(*e, greedy_request("hold", g.prompt_tokens, 2), col.sink("hold", [&](const OutputChunk& c) {
    if (c.completion_tokens == 1) {
      held.open();
      CHECK(gate.wait());
    }
  }));
  REQUIRE(held.wait());
  submit_ok(*e, greedy_request("q1", g.prompt_tokens, 2), col.sink("q1"));
  submit_ok(*e, greedy_request("q2", g.prompt_tokens, 2), col.sink("q2"));
  CHECK(e->load().queued_requests == 2);
  Status st = e->submit(greedy_request("q3", g.prompt_tokens, 2), col.sink("q3"));
  CHECK(st.code() == Errc::kResourceExhausted);
  // A live rid cannot be used twice.
  CHECK(e->submit(greedy_request("hold", g.prompt_tokens, 2), col.sink("dup")).code() == Errc::kAlreadyExists);

  auto refused = [&](GenerateRequest r) { return e->submit(std::move(r), col.sink("bad")).code(); };
  CHECK(refused(greedy_request("", g.prompt_tokens)) == Errc::kInvalidArgument);
  CHECK(refused(greedy_request("empty", {})) == Errc::kInvalidArgument);
  CHECK(refused(greedy_request("vocab", {1, 512})) == Errc::kInvalidArgument);
  CHECK(refused(greedy_request("neg", {1, -1})) == Errc::kInvalidArgument);
  CHECK(refused(greedy_request("context", g.prompt_tokens, 510)) == Errc::kOutOfRange);  // context 512
  CHECK(refused(greedy_request("pool", g.prompt_tokens, 300)) == Errc::kOutOfRange);  // never fits 256 tokens
  {
    GenerateRequest r = greedy_request("temp", g.prompt_tokens);
    r.sampling.temperature = -1;
    CHECK(refused(r) == Errc::kInvalidArgument);
    r = greedy_request("stopempty", g.prompt_tokens);
    r.stop = {""};
    CHECK(refused(r) == Errc::kInvalidArgument);
    r = greedy_request("stopnodetok", g.prompt_tokens);
    r.stop = {"x"};
    r.detokenize = false;
    CHECK(refused(r) == Errc::kInvalidArgument);
    r = greedy_request("lpstart", g.prompt_tokens);
    r.logprob_start_len = static_cast<int>(g.prompt_tokens.size());
    CHECK(refused(r) == Errc::kInvalidArgument);
  }
  gate.open();
  REQUIRE(col.wait(std::vector<std::string>{"hold", "q1", "q2"}));
  CHECK(col.get("q1").tokens.size() == 2);
  CHECK(col.get("bad").chunks == 0);  // refused requests never hear from the engine
  CHECK(col.get("q3").chunks == 0);
  CHECK(col.get("dup").chunks == 0);
}

TEST_CASE("engine service: flush_cache is refused while requests are live") {
  if (!have_stories()) return;
  auto e = start_engine({});
  const GoldenRow& g = golden_rows()[0];
  Collector col;
  std::mutex mu;
  std::condition_variable cv;
  std::optional<Status> flushed;
  submit_ok(*e, greedy_request("live", g.prompt_tokens, 3), col.sink("live", [&](const OutputChunk& c) {
    if (c.completion_tokens != 1) return;
    e->flush_cache([&](Status st) {  // posted from the engine thread: handled before the next step
      std::lock_guard lk(mu);
      flushed = std::move(st);
      cv.notify_all();
    });
  }));
  REQUIRE(col.wait("live"));
  std::unique_lock lk(mu);
  REQUIRE(cv.wait_for(lk, kWait, [&] { return flushed.has_value(); }));
  CHECK(flushed->code() == Errc::kUnavailable);
}

TEST_CASE("engine service: shutdown with requests in flight ends every one exactly once") {
  if (!have_stories()) return;
  EngineSetup s;
  s.options.max_running_requests = 3;  // some running, some queued
  auto e = start_engine(s);
  Collector col;
  std::vector<std::string> rids;
  for (int i = 0; i < 8; ++i) {
    rids.push_back(rid_of("r", i));
    submit_ok(*e, greedy_request(rids.back(), golden_rows()[static_cast<size_t>(i) % 6].prompt_tokens, 400),
              col.sink(rids.back()));
  }
  e->shutdown();
  for (const auto& rid : rids) {  // every final chunk came before shutdown() returned
    const Collected c = col.get(rid);
    CHECK(c.finished_chunks == 1);
    CHECK(c.chunks_after_finish == 0);
    if (c.finish.type == FinishInfo::Type::kAbort) CHECK(c.finish.abort_code == Errc::kUnavailable);
  }
  CHECK(e->submit(greedy_request("late", golden_rows()[0].prompt_tokens), col.sink("late")).code() == Errc::kUnavailable);
  bool called = false;
  e->flush_cache([&](Status st) {
    called = true;
    CHECK(st.code() == Errc::kUnavailable);
  });
  CHECK(called);
  e->shutdown();  // idempotent
  e.reset();      // and the destructor after it
}

TEST_CASE("engine service: sampled requests with a seed are reproducible, also batched and preempted") {
  if (!have_stories()) return;
  auto sampled = [](const std::string& rid, int row) {
    GenerateRequest r = greedy_request(rid, golden_rows()[static_cast<size_t>(row)].prompt_tokens, 48);
    r.sampling.temperature = 0.8f;
    r.sampling.top_p = 0.95f;
    r.sampling.seed = 1234 + static_cast<uint64_t>(row);
    return r;
  };
  std::vector<std::vector<int32_t>> alone;
  {
    auto e = start_engine({});
    for (int i = 0; i < 6; ++i) alone.push_back(run_one(*e, sampled(rid_of("a", i), i)).tokens);
  }
  EngineSetup s;
  s.max_total_tokens = 192;
  s.page_size = 4;
  auto e = start_engine(s);
  Collector col;
  std::vector<std::string> rids;
  for (int i = 0; i < 12; ++i) {
    rids.push_back(rid_of("b", i));
    submit_ok(*e, sampled(rids.back(), i % 6), col.sink(rids.back()));
  }
  REQUIRE(col.wait(rids));
  for (int i = 0; i < 12; ++i) CHECK(col.get(rids[static_cast<size_t>(i)]).tokens == alone[static_cast<size_t>(i % 6)]);
}

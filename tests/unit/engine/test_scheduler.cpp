// The Scheduler driven step by step on the test's thread (no engine thread): reckless
// admission that preempts all the time, the layer hook a PD prefill worker will use, and
// what a step does when there is nothing to do.
#include "engine/scheduler.h"
#include "test_engine_service_util.h"

using namespace pdctl;
using namespace pdctl::engine;
using namespace pdctl::engine::test;

namespace {

struct Bench {
  explicit Bench(int64_t pool_tokens, int page_size, SchedulerOptions options = {}, policy::Tuning tuning = {}) {
    EngineOptions o;
    o.model_path = shared_path("models/stories260K.gguf");
    o.threads = 1;
    o.page_size = page_size;
    o.max_total_tokens = pool_tokens;
    auto r = ModelRunner::create(o);
    REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
    runner = std::move(r).value();
    scheduler = std::make_unique<Scheduler>(*runner, nullptr, options, metrics, nullptr, tuning);
  }
  void add(GenerateRequest r) {
    const std::string rid = r.rid;
    metrics.queued.fetch_add(1);  // as submit() does
    scheduler->add(std::make_unique<Request>(std::move(r), col.sink(rid), nullptr, 0));
  }
  int run() {  // steps until nothing is left; bounded
    int steps = 0;
    while (scheduler->step()) REQUIRE(++steps < 100000);
    return steps;
  }

  std::unique_ptr<ModelRunner> runner;
  SchedulerMetrics metrics;
  std::unique_ptr<Scheduler> scheduler;
  Collector col;
};

}  // namespace

TEST_CASE("scheduler: reckless admission in a tiny pool preempts often, mid-prefill too, and outputs stay golden") {
  if (!have_stories()) return;
  const auto& rows = golden_rows();
  policy::Tuning reckless;  // reserve nothing for decodes: admit whatever prompt fits
  reckless.init_new_token_ratio = reckless.min_new_token_ratio = reckless.retract_new_token_ratio = 0;
  for (const bool cache : {false, true}) {
    SchedulerOptions o;
    o.chunked_prefill_size = 3;  // prompts take several steps, so some are preempted mid-prefill
    o.max_prefill_tokens = 6;
    o.disable_radix_cache = !cache;
    Bench b(160, 4, o, reckless);
    CAPTURE(cache);
    for (int i = 0; i < 18; ++i) b.add(greedy_request(rid_of("r", i), rows[static_cast<size_t>(i) % 6].prompt_tokens));
    b.run();
    for (int i = 0; i < 18; ++i) {
      const Collected c = b.col.get(rid_of("r", i));
      CAPTURE(i);
      CHECK(c.finished_chunks == 1);
      CHECK(c.tokens == rows[static_cast<size_t>(i) % 6].completion);
    }
    MESSAGE("preemptions with cache " << cache << ": " << b.metrics.requests_retracted.load());
    CHECK(b.metrics.requests_retracted.load() >= 18);
    CHECK(b.metrics.queued.load() == 0);
    CHECK(b.metrics.running.load() == 0);
    CHECK(b.metrics.tokens_in_use.load() == 0);
    CHECK(b.scheduler->live_requests() == 0);
    const kv::KvPool& pool = b.runner->kv_pool();
    CHECK(pool.free_pages() + b.metrics.cached_tokens.load() / 4 == pool.num_pages());
  }
}

TEST_CASE("scheduler: the layer hook sees every layer of every step with the batch's requests and pages") {
  if (!have_stories()) return;
  Bench b(4096, 16);
  const int layers = static_cast<int>(b.runner->config().num_layers);
  int calls = 0, prefill_entries = 0;
  std::map<std::string, std::vector<int32_t>> pages_seen;
  b.scheduler->set_layer_hook([&](const StepBatch& batch, int layer) {
    CHECK(layer == calls % layers);
    ++calls;
    if (layer != 0) return;
    for (const StepBatch::Entry& e : batch.entries()) {
      if (!e.prefill) continue;
      ++prefill_entries;
      CHECK(e.start == 0);
      CHECK(e.num_tokens == e.request->prompt_len);
      pages_seen[e.request->req.rid] = e.request->pages;
      // The pages are allocated and cover the chunk.
      for (int32_t p : e.request->pages) CHECK(b.runner->kv_pool().ref_count(p) >= 1);
    }
  });
  b.add(greedy_request("a", golden_rows()[0].prompt_tokens, 4));
  b.add(greedy_request("b", golden_rows()[1].prompt_tokens, 4));
  const int steps = b.run();
  CHECK(steps == 4);  // both prompts in the first step, then three decode steps
  CHECK(calls == steps * layers);
  CHECK(prefill_entries == 2);
  REQUIRE(pages_seen.size() == 2);
  CHECK(pages_seen["a"] != pages_seen["b"]);
}

TEST_CASE("scheduler: an idle step does nothing; a request that cannot fit even alone is aborted, not stuck") {
  if (!have_stories()) return;
  Bench b(64, 16);
  CHECK_FALSE(b.scheduler->step());
  // submit() refuses this (prompt plus output beyond the pool); added directly, the
  // scheduler must still not wait for memory that can never come.
  GenerateRequest r = greedy_request("huge", std::vector<int32_t>(80, 300), 1);
  b.add(r);
  b.run();
  const Collected c = b.col.get("huge");
  CHECK(c.finished);
  CHECK(c.finish.type == FinishInfo::Type::kAbort);
  CHECK(c.finish.abort_code == Errc::kResourceExhausted);
  CHECK(b.runner->kv_pool().free_pages() == b.runner->kv_pool().num_pages());
}

// The whole non-network path in the order the request driver will use it, against a
// simulated server on a simulated clock: plan, dataset, schedule, bodies, streamed chunks,
// summary, table and JSON line.
#include <doctest/doctest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "roles/bench/bench_dataset.h"
#include "roles/bench/bench_plan.h"
#include "roles/bench/bench_schedule.h"
#include "roles/bench/bench_stream.h"
#include "test_bench_fake_tokenizer.h"

using namespace pdctl::roles;

TEST_CASE("six requests, two at a time, each 4 tokens: first after 0.25 s, then every 0.125 s") {
  BenchOptions o;
  o.dataset_name = "random-ids";
  o.num_prompts = 6;
  o.random_input_len = 8;
  o.random_output_len = 4;
  o.random_range_ratio = 1.0;
  o.max_concurrency = 2;
  auto plan = make_serving_plan(o);
  REQUIRE(plan.has_value());

  testing::CharTokenizer tok;
  BenchRng rng(plan->seed);
  auto rows = build_dataset(o, plan->backend, tok, rng);
  REQUIRE(rows.has_value());
  RequestDispatcher dispatcher(arrival_offsets(rows->size(), plan->request_rate, rng.np),
                               o.max_concurrency);
  std::vector<RequestRecord> records(rows->size());

  // The simulated server: a request sent at t streams token k (1-based) at
  // t + 0.25 + (k - 1) * 0.125, then [DONE] with the last token.
  struct Live {
    size_t index;
    double sent;
  };
  std::vector<Live> live;
  double now = 0;
  while (!dispatcher.done()) {
    while (auto i = dispatcher.next(now)) {
      const DatasetRow& row = (*rows)[*i];
      std::string body = build_request_body(plan->body, row, row.output_len);
      auto json = nlohmann::json::parse(body);
      CHECK(json["input_ids"].size() == 8);
      CHECK(json["sampling_params"]["max_new_tokens"] == 4);
      records[*i].begin(row.prompt_len, row.output_len, now);
      live.push_back({*i, now});
    }
    // Play the earliest-started live request to its end.
    REQUIRE_FALSE(live.empty());
    Live req = live.front();
    live.erase(live.begin());
    RequestRecord& rec = records[req.index];
    std::string text;
    double t = req.sent;
    for (int k = 1; k <= 4; ++k) {
      t = req.sent + 0.25 + (k - 1) * 0.125;
      text += "t" + std::to_string(k);
      std::string chunk = R"(data: {"text":")" + text + R"(","meta_info":{"completion_tokens":)" +
                          std::to_string(k) + "}}";
      ChunkInfo info = on_stream_payload(plan->backend, chunk, t, rec);
      CHECK(info.token);
    }
    on_stream_payload(plan->backend, "data: [DONE]", t, rec);
    finish_stream(rec);
    dispatcher.on_finished();
    now = t;
  }
  const double duration = now;  // the last response ended at 1.875
  CHECK(duration == 1.875);

  BenchmarkSummary s = summarize(records, duration, plan->goodput, &tok);
  CHECK(s.completed == 6);
  CHECK(s.failed == 0);
  CHECK(s.total_input == 48);
  CHECK(s.total_output == 24);
  CHECK(s.total_output_retokenized == 48);  // "t1t2t3t4": 8 characters each
  CHECK(s.ttft_ms.mean == 250);
  CHECK(s.itl_ms.mean == 125);
  CHECK(s.tpot_ms.mean == 125);
  CHECK(s.e2e_ms.mean == 625);
  CHECK(s.concurrency == doctest::Approx(2.0));  // two in flight all the time
  CHECK(s.request_throughput == doctest::Approx(3.2));
  CHECK(s.max_output_tokens_per_s == 14);  // second 1: 6 tokens of the 2nd pair, 8 of the 3rd

  std::string table = format_result_table(plan->run, s);
  CHECK(table.find("Max request concurrency:                 2         \n") != std::string::npos);
  CHECK(table.find("Successful requests:                     6         \n") != std::string::npos);
  std::string line = format_jsonl_record(plan->run, s, records, true);
  std::string strict = line;
  strict.replace(strict.find("Infinity"), 8, "null");
  auto j = nlohmann::json::parse(strict);
  CHECK(j["completed"] == 6);
  CHECK(j["itls"][0].size() == 3);
  CHECK(j["generated_texts"][5] == "t1t2t3t4");
}

// The summary's arithmetic on a synthetic timeline, each expected value worked out by
// hand (and checked against numpy for the percentiles).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "roles/bench/bench_metrics.h"
#include "test_bench_fake_tokenizer.h"

using namespace pdctl::roles;
using doctest::Approx;

TEST_CASE("percentiles interpolate linearly, as numpy's default") {
  const std::vector<double> a{1, 2, 3, 4};
  CHECK(percentile_sorted(a, 50) == 2.5);
  CHECK(percentile_sorted(a, 99) == Approx(3.97));  // index 2.97: 3 + 0.97
  CHECK(percentile_sorted(a, 0) == 1);
  CHECK(percentile_sorted(a, 100) == 4);
  const std::vector<double> b{10, 20, 30, 40, 50};
  CHECK(percentile_sorted(b, 90) == 46);  // index 3.6
  CHECK(percentile_sorted(b, 95) == 48);  // index 3.8
  CHECK(percentile_sorted(std::vector<double>{3}, 99) == 3);
  CHECK(percentile_sorted(std::vector<double>{}, 99) == 0);
  // numpy: np.percentile([0.1 * 2**k for k in range(10)], 99) == 48.89600000000001
  std::vector<double> c;
  for (int k = 0; k < 10; ++k) c.push_back(0.1 * (1 << k));
  CHECK(percentile_sorted(c, 99) == 48.89600000000001);
}

TEST_CASE("describe: mean, median, population std, percentiles, max") {
  Distribution d = describe({4, 1, 3, 2});
  CHECK(d.mean == 2.5);
  CHECK(d.median == 2.5);
  CHECK(d.std == Approx(1.118033988749895));  // np.std([1, 2, 3, 4])
  CHECK(d.max == 4);
  Distribution none = describe({});
  CHECK(none.mean == 0);
  CHECK(none.p99 == 0);
  CHECK(none.max == 0);
}

namespace {

RequestRecord done(double start, int prompt, int out, double ttft, std::vector<double> itls,
                   double latency, std::string text) {
  RequestRecord r;
  r.begin(prompt, 64, start);
  r.finished = true;
  r.success = true;
  r.output_len = out;
  r.ttft_s = ttft;
  r.itl_s = std::move(itls);
  r.latency_s = latency;
  r.generated_text = std::move(text);
  r.generated_bytes = r.generated_text.size();
  return r;
}

// A: sent at 0, first token at 0.5, then 0.25, 0.25, 0.5; 4 tokens; done at 1.5.
// B: sent at 0.5, first token after 1.0, one more after 0.5; 2 tokens; 2.0 end to end.
// C: sent at 1.0, one token at 0.25, done then.
// D: failed after a partial stream; left out of everything but the counts.
std::vector<RequestRecord> timeline() {
  std::vector<RequestRecord> rs;
  rs.push_back(done(1000.0, 10, 4, 0.5, {0.25, 0.25, 0.5}, 1.5, "abcd"));
  rs.push_back(done(1000.5, 20, 2, 1.0, {0.5}, 2.0, "xy"));
  rs.push_back(done(1001.0, 30, 1, 0.25, {}, 0.25, "z"));
  RequestRecord d;
  d.begin(40, 64, 1001.0);
  d.ttft_s = 0.125;
  d.itl_s = {0.1};
  d.finished = true;
  d.error = "boom";
  rs.push_back(d);
  return rs;
}

}  // namespace

TEST_CASE("summary of a synthetic timeline") {
  const auto records = timeline();
  testing::CharTokenizer tok;
  BenchmarkSummary s = summarize(records, /*duration_s=*/4.0, GoodputSlo{}, &tok);

  CHECK(s.completed == 3);
  CHECK(s.failed == 1);
  CHECK(s.total_input == 60);  // 10 + 20 + 30: the failed request's 40 is not counted
  CHECK(s.total_output == 7);
  CHECK(s.total_output_retokenized == 7);  // "abcd" "xy" "z", one token per character
  CHECK(s.output_lens == std::vector<int>{4, 2, 1, 0});
  CHECK(s.request_throughput == 0.75);
  CHECK(s.input_throughput == 15);
  CHECK(s.output_throughput == 1.75);
  CHECK(s.total_throughput == 16.75);

  // TTFT [0.5, 1.0, 0.25] s
  CHECK(s.ttft_ms.mean == Approx(583.3333333));
  CHECK(s.ttft_ms.median == 500);
  CHECK(s.ttft_ms.std == Approx(311.8047822));  // sqrt(((1/12)^2 + (5/12)^2 + (4/12)^2) / 3)
  CHECK(s.ttft_ms.p99 == Approx(990));          // index 1.98 between 0.5 and 1.0
  // TPOT excludes the first token: A (1.5 - 0.5) / 3, B (2.0 - 1.0) / 1; C has one token.
  CHECK(s.tpot_ms.mean == Approx(666.6666667));
  CHECK(s.tpot_ms.median == Approx(666.6666667));
  CHECK(s.tpot_ms.p99 == Approx(993.3333333));  // index 0.99 between 1/3 and 1
  // ITL [0.25, 0.25, 0.5, 0.5]: only successful requests' (D's 0.1 is left out)
  CHECK(s.itl_ms.mean == 375);
  CHECK(s.itl_ms.median == 375);
  CHECK(s.itl_ms.std == 125);
  CHECK(s.itl_ms.p95 == 500);
  CHECK(s.itl_ms.p99 == 500);
  CHECK(s.itl_ms.max == 500);
  // E2E [1.5, 2.0, 0.25]
  CHECK(s.e2e_ms.mean == 1250);
  CHECK(s.e2e_ms.median == 1500);
  CHECK(s.e2e_ms.p90 == Approx(1900));
  CHECK(s.e2e_ms.p99 == Approx(1990));
  // Concurrency: 3.75 s of latency over 4 s.
  CHECK(s.concurrency == 0.9375);
  // Buckets from t=1000: tokens at 0.5 0.75 | 1.0 1.5 (A) 1.5 (B) 1.25 (C) | 2.0 (B);
  // in flight: A seconds 0-1, B 0-2, C 1.
  CHECK(s.max_output_tokens_per_s == 4);
  CHECK(s.max_concurrent_requests == 3);
  CHECK_FALSE(s.request_goodput.has_value());
}

TEST_CASE("goodput: requests per second meeting every given SLO") {
  const auto records = timeline();
  auto goodput = [&](std::vector<std::string> args) {
    auto slo = parse_goodput(args);
    REQUIRE(slo.has_value());
    BenchmarkSummary s = summarize(records, 4.0, *slo, nullptr);
    REQUIRE(s.request_goodput.has_value());
    return std::pair(s.good_completed, *s.request_goodput);
  };
  CHECK(goodput({"ttft:600"}) == std::pair(2, 0.5));                // A, C
  CHECK(goodput({"ttft:600", "tpot:400"}) == std::pair(2, 0.5));    // C's one token: TPOT 0
  CHECK(goodput({"ttft:600", "tpot:300"}) == std::pair(1, 0.25));   // A's TPOT is 333 ms
  CHECK(goodput({"e2e:1500"}) == std::pair(2, 0.5));                // A's 1500 ms is within
  CHECK(goodput({"e2el:1499"}) == std::pair(1, 0.25));              // vLLM's name
  CHECK(goodput({"ttft:600", "tpot:300", "e2e:200"}) == std::pair(0, 0.0));
}

TEST_CASE("goodput arguments that are refused") {
  for (std::string bad : {"ttft", "foo:1", "ttft:-1", "ttft:abc", "ttft:1:2", "ttft:", ":5"}) {
    CAPTURE(bad);
    std::vector<std::string> args{bad};
    CHECK_FALSE(parse_goodput(args).has_value());
  }
}

TEST_CASE("all requests failed: counts only, zeros elsewhere") {
  RequestRecord r;
  r.begin(5, 8, 0.0);
  r.finished = true;
  r.error = "refused";
  std::vector<RequestRecord> rs{r, r};
  BenchmarkSummary s = summarize(rs, 1.0, GoodputSlo{}, nullptr);
  CHECK(s.completed == 0);
  CHECK(s.failed == 2);
  CHECK(s.total_input == 0);
  CHECK(s.e2e_ms.mean == 0);
  CHECK(s.max_concurrent_requests == 0);
  CHECK(s.output_lens == std::vector<int>{0, 0});
}

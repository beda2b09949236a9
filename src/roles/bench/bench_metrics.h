#pragma once
// The numbers of a serving benchmark run, computed as sglang.bench_serving's
// calculate_metrics does (python/sglang/bench_serving.py), plus goodput as vLLM's
// benchmark_serving.py defines it (after DistServe): successful requests per second that
// meet every given SLO.
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "roles/bench/bench_record.h"
#include "roles/bench/bench_tokenizer.h"

namespace pdctl::roles {

// numpy's np.percentile (default "linear" method) of sorted values, q in [0, 100].
double percentile_sorted(std::span<const double> sorted, double q);

// mean / median / std (population, as np.std) / percentiles / max of some values, in the
// values' unit. No values give all zeros (sglang's `np.mean(xs or 0)`).
struct Distribution {
  double mean = 0, median = 0, std = 0, p90 = 0, p95 = 0, p99 = 0, max = 0;
};
Distribution describe(std::vector<double> values);

// --goodput "ttft:MS" "tpot:MS" "e2e:MS" ("e2el" as in vLLM is accepted too).
struct GoodputSlo {
  std::optional<double> ttft_ms, tpot_ms, e2e_ms;
  bool any() const { return ttft_ms || tpot_ms || e2e_ms; }
};
Result<GoodputSlo> parse_goodput(std::span<const std::string> pairs);

struct BenchmarkSummary {
  int completed = 0;  // successful requests
  int failed = 0;     // left out of every number below but the counts of requests
  long long total_input = 0;               // prompt tokens of successful requests
  long long total_output = 0;              // output tokens (server-reported where possible)
  long long total_output_retokenized = 0;  // generated text re-encoded by our tokenizer
  double duration_s = 0;
  double request_throughput = 0;  // completed / duration
  double input_throughput = 0;    // total_input / duration
  double output_throughput = 0;   // total_output / duration
  double output_throughput_retokenized = 0;
  double total_throughput = 0;  // (total_input + total_output) / duration
  double total_throughput_retokenized = 0;
  Distribution ttft_ms;  // time to first token
  Distribution tpot_ms;  // (latency - ttft) / (output_len - 1), for output_len > 1
  Distribution itl_ms;   // every inter-token latency of every request
  Distribution e2e_ms;   // end-to-end latency
  double concurrency = 0;  // sum of latencies / duration: requests in flight on average
  double max_output_tokens_per_s = 0;  // busiest one-second bucket of token arrivals
  int max_concurrent_requests = 0;     // most requests in flight in a one-second bucket
  std::optional<double> request_goodput;  // with --goodput: good requests / duration
  int good_completed = 0;
  std::vector<int> output_lens;  // per request, 0 for a failed one (--output-details)
};

// Summarizes finished records over the measured duration. The retokenized counts need
// `tokenizer` and kept text; without them they are 0.
BenchmarkSummary summarize(std::span<const RequestRecord> records, double duration_s,
                           const GoodputSlo& slo, const BenchTokenizer* tokenizer);

}  // namespace pdctl::roles

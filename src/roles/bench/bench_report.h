#pragma once
// The results of a serving benchmark run as sglang.bench_serving prints and writes them
// (python/sglang/bench_serving.py, benchmark()): the "Serving Benchmark Result" table,
// and the JSON line appended to --output-file, with --output-details' per-request arrays.
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"
#include "roles/bench/bench_metrics.h"
#include "roles/bench/bench_options.h"
#include "roles/bench/bench_record.h"

namespace pdctl::roles {

// What the table and the JSON line say about the run besides its metrics.
struct RunInfo {
  std::string backend;
  std::string dataset_name;
  double request_rate = 0;  // +infinity for inf
  std::optional<int> max_concurrency;
  std::optional<int> sharegpt_output_len;
  int random_input_len = 0;
  int random_output_len = 0;
  double random_range_ratio = 0;
  std::string tag;                     // null in the JSON line when empty
  std::optional<double> accept_length; // speculative decoding, from the server, if known
  std::string server_info_json;        // the server's /get_server_info body; null when empty
};
RunInfo run_info(const BenchOptions& opts, double request_rate);

// Python's repr() of a float ("inf", "4.0", "0.1", "1e-05"), which sglang's table and
// JSON line use.
std::string python_float_repr(double value);

// The console table, from its leading blank line to the closing "=" rule, each line ending
// in '\n'. With --goodput, "Request goodput (req/s):" follows the request throughput (as
// in vLLM's table); sglang has no such row.
std::string format_result_table(const RunInfo& run, const BenchmarkSummary& summary);

// One line of JSON (no newline) with sglang's keys in sglang's order, numbers as Python's
// json.dumps writes them; "request_goodput" is added last with --goodput. With `details`,
// the arrays input_lens, output_lens, ttfts, itls, generated_texts and errors follow, one
// entry per record. server_info_json must be valid JSON when not empty.
std::string format_jsonl_record(const RunInfo& run, const BenchmarkSummary& summary,
                                std::span<const RequestRecord> records, bool details);

// Appends `line` and a newline to `path` (created if absent).
Status append_jsonl(const std::string& path, std::string_view line);

}  // namespace pdctl::roles

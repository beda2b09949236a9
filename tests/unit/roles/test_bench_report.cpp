// The console table and the JSON line, compared with what sglang.bench_serving prints and
// writes, and the progress display's text.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdlib.h>

#include "roles/bench/bench_progress.h"
#include "roles/bench/bench_report.h"

namespace fs = std::filesystem;
using namespace pdctl::roles;

namespace {

std::vector<RequestRecord> two_requests() {
  std::vector<RequestRecord> rs(2);
  rs[0].begin(10, 8, 0.0);
  rs[0].finished = rs[0].success = true;
  rs[0].ttft_s = 0.5;
  rs[0].itl_s = {0.25, 0.25};
  rs[0].latency_s = 1.0;
  rs[0].output_len = 3;
  rs[0].generated_text = "h\xc3\xa9llo\n";
  rs[1].begin(20, 8, 0.5);
  rs[1].finished = true;
  rs[1].error = "Service Unavailable: busy";
  return rs;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

}  // namespace

TEST_CASE("Python float repr") {
  CHECK(python_float_repr(INFINITY) == "inf");
  CHECK(python_float_repr(4.0) == "4.0");
  CHECK(python_float_repr(0.5) == "0.5");
  CHECK(python_float_repr(1e-05) == "1e-05");
  CHECK(python_float_repr(0.0001) == "0.0001");
  CHECK(python_float_repr(1e16) == "1e+16");
  CHECK(python_float_repr(1e15) == "1000000000000000.0");
  CHECK(python_float_repr(123456789.125) == "123456789.125");
  CHECK(python_float_repr(-0.0) == "-0.0");
  CHECK(python_float_repr(2.5e-7) == "2.5e-07");
  CHECK(python_float_repr(1.0 / 3) == "0.3333333333333333");
  CHECK(python_float_repr(1e22) == "1e+22");
  CHECK(python_float_repr(100.0) == "100.0");
}

TEST_CASE("the result table has sglang's rows, labels and layout") {
  auto records = two_requests();
  BenchmarkSummary s = summarize(records, 2.0, GoodputSlo{}, nullptr);
  BenchOptions o;
  RunInfo run = run_info(o, INFINITY);
  std::string table = format_result_table(run, s);
  auto lines = lines_of(table);
  const std::vector<std::string> want = {
      "",
      "============ Serving Benchmark Result ============",
      "Backend:                                 sglang    ",
      "Traffic request rate:                    inf       ",
      "Max request concurrency:                 not set   ",
      "Successful requests:                     1         ",
      "Benchmark duration (s):                  2.00      ",
      "Total input tokens:                      10        ",
      "Total input text tokens:                 10        ",
      "Total generated tokens:                  3         ",
      "Total generated tokens (retokenized):    0         ",
      "Request throughput (req/s):              0.50      ",
      "Input token throughput (tok/s):          5.00      ",
      "Output token throughput (tok/s):         1.50      ",
      "Peak output token throughput (tok/s):    2.00      ",
      "Peak concurrent requests:                1         ",
      "Total token throughput (tok/s):          6.50      ",
      "Concurrency:                             0.50      ",
      "----------------End-to-End Latency----------------",
      "Mean E2E Latency (ms):                   1000.00   ",
      "Median E2E Latency (ms):                 1000.00   ",
      "P90 E2E Latency (ms):                    1000.00   ",
      "P99 E2E Latency (ms):                    1000.00   ",
      "---------------Time to First Token----------------",
      "Mean TTFT (ms):                          500.00    ",
      "Median TTFT (ms):                        500.00    ",
      "P99 TTFT (ms):                           500.00    ",
      "-----Time per Output Token (excl. 1st token)------",
      "Mean TPOT (ms):                          250.00    ",
      "Median TPOT (ms):                        250.00    ",
      "P99 TPOT (ms):                           250.00    ",
      "---------------Inter-Token Latency----------------",
      "Mean ITL (ms):                           250.00    ",
      "Median ITL (ms):                         250.00    ",
      "P95 ITL (ms):                            250.00    ",
      "P99 ITL (ms):                            250.00    ",
      "Max ITL (ms):                            250.00    ",
      "=================================================="};
  CHECK(lines == want);
}

TEST_CASE("goodput, a rate, a concurrency limit and accept length in the table") {
  auto records = two_requests();
  std::vector<std::string> slo_args{"ttft:600"};
  BenchmarkSummary s = summarize(records, 2.0, parse_goodput(slo_args).value(), nullptr);
  BenchOptions o;
  o.max_concurrency = 64;
  RunInfo run = run_info(o, 4.0);
  run.accept_length = 2.5;
  auto lines = lines_of(format_result_table(run, s));
  auto has = [&](const std::string& line) {
    return std::find(lines.begin(), lines.end(), line) != lines.end();
  };
  CHECK(has("Traffic request rate:                    4.0       "));
  CHECK(has("Max request concurrency:                 64        "));
  CHECK(has("Request goodput (req/s):                 0.50      "));
  CHECK(has("Accept length:                           2.50      "));
  auto at = [&](const std::string& prefix) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (lines[i].rfind(prefix, 0) == 0) return i;
    }
    return lines.size();
  };
  CHECK(at("Request goodput") == at("Request throughput") + 1);
}

TEST_CASE("the JSON line has sglang's keys in sglang's order") {
  auto records = two_requests();
  BenchmarkSummary s = summarize(records, 2.0, GoodputSlo{}, nullptr);
  BenchOptions o;
  o.max_concurrency = 8;
  RunInfo run = run_info(o, 4.0);
  std::string line = format_jsonl_record(run, s, records, /*details=*/false);
  CHECK(line.find('\n') == std::string::npos);
  auto j = nlohmann::ordered_json::parse(line);
  std::vector<std::string> keys;
  for (const auto& item : j.items()) keys.push_back(item.key());
  const std::vector<std::string> want = {
      "tag", "backend", "dataset_name", "request_rate", "max_concurrency", "sharegpt_output_len",
      "random_input_len", "random_output_len", "random_range_ratio", "server_info", "duration",
      "completed", "total_input_tokens", "total_input_text_tokens", "total_input_vision_tokens",
      "total_output_tokens", "total_output_tokens_retokenized", "request_throughput",
      "input_throughput", "output_throughput", "total_throughput", "mean_e2e_latency_ms",
      "median_e2e_latency_ms", "std_e2e_latency_ms", "p90_e2e_latency_ms", "p99_e2e_latency_ms",
      "mean_ttft_ms", "median_ttft_ms", "std_ttft_ms", "p99_ttft_ms", "mean_tpot_ms",
      "median_tpot_ms", "std_tpot_ms", "p99_tpot_ms", "mean_itl_ms", "median_itl_ms", "std_itl_ms",
      "p95_itl_ms", "p99_itl_ms", "concurrency", "accept_length", "max_output_tokens_per_s",
      "max_concurrent_requests"};
  CHECK(keys == want);
  CHECK(j["completed"] == 1);
  CHECK(j["total_input_tokens"] == 10);
  CHECK(j["total_output_tokens"] == 3);
  CHECK(j["request_throughput"] == 0.5);
  CHECK(j["mean_ttft_ms"] == 500.0);
  CHECK(j["p99_itl_ms"] == 250.0);
  CHECK(j["max_concurrency"] == 8);
  CHECK(j["tag"].is_null());
  CHECK(j["sharegpt_output_len"].is_null());
  // Python's json.dumps layout: ", " and ": ", floats as repr().
  CHECK(line.rfind(R"({"tag": null, "backend": "sglang", "dataset_name": "random", "request_rate": 4.0, )", 0) == 0);
}

TEST_CASE("--output-details arrays, goodput, and an infinite rate as Python writes it") {
  auto records = two_requests();
  std::vector<std::string> slo_args{"e2e:2000"};
  BenchmarkSummary s = summarize(records, 2.0, parse_goodput(slo_args).value(), nullptr);
  BenchOptions o;
  o.tag = "run-1";
  RunInfo run = run_info(o, INFINITY);
  run.server_info_json = R"({"version": "x"})";
  std::string line = format_jsonl_record(run, s, records, /*details=*/true);
  CHECK(line.find(R"("request_rate": Infinity, )") != std::string::npos);
  CHECK(line.find(R"("server_info": {"version": "x"}, )") != std::string::npos);
  CHECK(line.find(R"("input_lens": [10, 20], "output_lens": [3, 0], "ttfts": [0.5, 0.0], )"
                  R"("itls": [[0.25, 0.25], []], "generated_texts": ["h\u00e9llo\n", ""], )"
                  R"("errors": ["", "Service Unavailable: busy"]})") != std::string::npos);
  // Strict JSON once Infinity is replaced.
  std::string strict = line;
  strict.replace(strict.find("Infinity"), 8, "null");
  auto j = nlohmann::ordered_json::parse(strict);
  CHECK(j["tag"] == "run-1");
  CHECK(j["request_goodput"] == 0.5);
  CHECK(j.items().begin().key() == "tag");
  CHECK(j["generated_texts"][0] == "h\xc3\xa9llo\n");
}

TEST_CASE("append_jsonl appends one line per run") {
  char tmpl[] = "/tmp/pdctl-bench-XXXXXX";
  fs::path dir = mkdtemp(tmpl);
  std::string path = (dir / "out.jsonl").string();
  REQUIRE(append_jsonl(path, R"({"a": 1})").is_ok());
  REQUIRE(append_jsonl(path, R"({"a": 2})").is_ok());
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  CHECK(ss.str() == "{\"a\": 1}\n{\"a\": 2}\n");
  CHECK_FALSE(append_jsonl((dir / "no" / "such" / "dir.jsonl").string(), "{}").is_ok());
  fs::remove_all(dir);
}

TEST_CASE("progress: a bar on a terminal, plain lines otherwise, nothing when disabled") {
  CHECK(ProgressDisplay::choose(true, true) == ProgressDisplay::Mode::kOff);
  CHECK(ProgressDisplay::choose(false, true) == ProgressDisplay::Mode::kBar);
  CHECK(ProgressDisplay::choose(false, false) == ProgressDisplay::Mode::kLines);
  CHECK(format_duration(75) == "01:15");
  CHECK(format_duration(3725) == "1:02:05");
  CHECK(format_duration(NAN) == "?");

  SUBCASE("bar") {
    ProgressDisplay p(ProgressDisplay::Mode::kBar, 1000, 100.0);
    std::string first = p.update(450, 112.0);
    CHECK(first.rfind("\r 45%|", 0) == 0);
    CHECK(first.find("| 450/1000 [00:12<00:14, 37.50it/s]") != std::string::npos);
    CHECK(p.update(451, 112.05).empty());  // redrawn at most every 0.1 s
    CHECK_FALSE(p.update(452, 112.2).empty());
    std::string last = p.update(1000, 112.21);  // the end is always drawn
    CHECK(last.find("100%|") != std::string::npos);
    CHECK(p.finish(1000, 112.3) == "\n");
  }
  SUBCASE("lines") {
    ProgressDisplay p(ProgressDisplay::Mode::kLines, 200, 0.0, 10.0);
    CHECK(p.update(1, 0.0) == "1/200 requests (0%), elapsed 00:00, ETA ?, ? req/s\n");
    CHECK(p.update(50, 5.0).empty());
    CHECK(p.update(100, 10.0) == "100/200 requests (50%), elapsed 00:10, ETA 00:10, 10.00 req/s\n");
    CHECK(p.finish(200, 20.0) == "200/200 requests (100%), elapsed 00:20, ETA 00:00, 10.00 req/s\n");
  }
  SUBCASE("off") {
    ProgressDisplay p(ProgressDisplay::Mode::kOff, 10, 0.0);
    CHECK(p.update(10, 1.0).empty());
    CHECK(p.finish(10, 1.0).empty());
  }
}

#include "roles/bench/bench_report.h"

#include <charconv>
#include <cmath>
#include <fmt/format.h>
#include <fstream>

#include "roles/bench/bench_json_scan.h"

namespace pdctl::roles {

RunInfo run_info(const BenchOptions& opts, double request_rate) {
  RunInfo r;
  r.backend = opts.backend;
  r.dataset_name = opts.dataset_name;
  r.request_rate = request_rate;
  r.max_concurrency = opts.max_concurrency;
  r.sharegpt_output_len = opts.sharegpt_output_len;
  r.random_input_len = opts.random_input_len;
  r.random_output_len = opts.random_output_len;
  r.random_range_ratio = opts.random_range_ratio;
  r.tag = opts.tag;
  return r;
}

std::string python_float_repr(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  // The shortest digits that read back as `value`, laid out as Python's repr: plain
  // notation for exponents in [-4, 16), else d.ddde+XX.
  char buf[64];
  auto end = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::scientific).ptr;
  std::string_view s(buf, static_cast<size_t>(end - buf));
  std::string out;
  if (s.front() == '-') {
    out.push_back('-');
    s.remove_prefix(1);
  }
  size_t e = s.find('e');
  std::string digits;
  for (char c : s.substr(0, e)) {
    if (c != '.') digits.push_back(c);
  }
  int exp = 0;
  std::string_view exp_text = s.substr(e + 1);
  if (exp_text.front() == '+') exp_text.remove_prefix(1);
  std::from_chars(exp_text.data(), exp_text.data() + exp_text.size(), exp);
  if (exp >= -4 && exp < 16) {
    int point = exp + 1;
    if (point <= 0) {
      out += "0." + std::string(static_cast<size_t>(-point), '0') + digits;
    } else if (static_cast<size_t>(point) >= digits.size()) {
      out += digits + std::string(static_cast<size_t>(point) - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, static_cast<size_t>(point)) + "." + digits.substr(static_cast<size_t>(point));
    }
  } else {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    out += fmt::format("e{}{:02d}", exp < 0 ? '-' : '+', std::abs(exp));
  }
  return out;
}

namespace {

// "{:<40} {:<10}" and "{:<40} {:<10.2f}" of sglang's table.
void row(std::string& out, std::string_view label, std::string_view value) {
  out += fmt::format("{:<40} {:<10}\n", label, value);
}
void row(std::string& out, std::string_view label, double value) {
  out += fmt::format("{:<40} {:<10.2f}\n", label, value);
}
void row(std::string& out, std::string_view label, long long value) {
  out += fmt::format("{:<40} {:<10}\n", label, value);
}
// "{s:{c}^{n}}": centred, the left side taking the smaller half, as Python's format.
void rule(std::string& out, std::string_view title, char fill) {
  const size_t width = 50;
  size_t pad = title.size() < width ? width - title.size() : 0;
  out += std::string(pad / 2, fill) + std::string(title) + std::string(pad - pad / 2, fill) + "\n";
}

// Python's json.dumps pieces.
class JsonLine {
 public:
  void key(std::string_view k) {
    out_ += first_ ? "{" : ", ";
    first_ = false;
    append_json_string(out_, k);
    out_ += ": ";
  }
  void num(std::string_view k, double v) {
    key(k);
    number(v);
  }
  void num(std::string_view k, long long v) {
    key(k);
    out_ += std::to_string(v);
  }
  void str(std::string_view k, std::string_view v) {
    key(k);
    append_json_string(out_, v);
  }
  void null(std::string_view k) {
    key(k);
    out_ += "null";
  }
  void raw(std::string_view k, std::string_view json) {
    key(k);
    out_ += json;
  }
  // Floats as repr(), and inf/nan as Python writes them (not strict JSON, as sglang's).
  void number(double v) {
    if (std::isnan(v)) {
      out_ += "NaN";
    } else if (std::isinf(v)) {
      out_ += v > 0 ? "Infinity" : "-Infinity";
    } else {
      out_ += python_float_repr(v);
    }
  }
  std::string& buffer() { return out_; }
  std::string finish() {
    out_ += first_ ? "{}" : "}";
    return std::move(out_);
  }

 private:
  std::string out_;
  bool first_ = true;
};

template <class T, class F>
void array(JsonLine& j, std::string_view k, std::span<const T> items, F&& write_one) {
  j.key(k);
  std::string& out = j.buffer();
  out += "[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ", ";
    write_one(items[i]);
  }
  out += "]";
}

}  // namespace

std::string format_result_table(const RunInfo& run, const BenchmarkSummary& s) {
  std::string out = "\n";
  rule(out, " Serving Benchmark Result ", '=');
  row(out, "Backend:", run.backend);
  row(out, "Traffic request rate:", python_float_repr(run.request_rate));
  row(out, "Max request concurrency:",
      run.max_concurrency ? std::to_string(*run.max_concurrency) : std::string("not set"));
  row(out, "Successful requests:", static_cast<long long>(s.completed));
  row(out, "Benchmark duration (s):", s.duration_s);
  row(out, "Total input tokens:", s.total_input);
  row(out, "Total input text tokens:", s.total_input);
  row(out, "Total generated tokens:", s.total_output);
  row(out, "Total generated tokens (retokenized):", s.total_output_retokenized);
  row(out, "Request throughput (req/s):", s.request_throughput);
  if (s.request_goodput) row(out, "Request goodput (req/s):", *s.request_goodput);
  row(out, "Input token throughput (tok/s):", s.input_throughput);
  row(out, "Output token throughput (tok/s):", s.output_throughput);
  row(out, "Peak output token throughput (tok/s):", s.max_output_tokens_per_s);
  row(out, "Peak concurrent requests:", static_cast<long long>(s.max_concurrent_requests));
  row(out, "Total token throughput (tok/s):", s.total_throughput);
  row(out, "Concurrency:", s.concurrency);
  if (run.accept_length && *run.accept_length != 0) row(out, "Accept length:", *run.accept_length);
  rule(out, "End-to-End Latency", '-');
  row(out, "Mean E2E Latency (ms):", s.e2e_ms.mean);
  row(out, "Median E2E Latency (ms):", s.e2e_ms.median);
  row(out, "P90 E2E Latency (ms):", s.e2e_ms.p90);
  row(out, "P99 E2E Latency (ms):", s.e2e_ms.p99);
  rule(out, "Time to First Token", '-');
  row(out, "Mean TTFT (ms):", s.ttft_ms.mean);
  row(out, "Median TTFT (ms):", s.ttft_ms.median);
  row(out, "P99 TTFT (ms):", s.ttft_ms.p99);
  rule(out, "Time per Output Token (excl. 1st token)", '-');
  row(out, "Mean TPOT (ms):", s.tpot_ms.mean);
  row(out, "Median TPOT (ms):", s.tpot_ms.median);
  row(out, "P99 TPOT (ms):", s.tpot_ms.p99);
  rule(out, "Inter-Token Latency", '-');
  row(out, "Mean ITL (ms):", s.itl_ms.mean);
  row(out, "Median ITL (ms):", s.itl_ms.median);
  row(out, "P95 ITL (ms):", s.itl_ms.p95);
  row(out, "P99 ITL (ms):", s.itl_ms.p99);
  row(out, "Max ITL (ms):", s.itl_ms.max);
  out += std::string(50, '=') + "\n";
  return out;
}

std::string format_jsonl_record(const RunInfo& run, const BenchmarkSummary& s,
                                std::span<const RequestRecord> records, bool details) {
  JsonLine j;
  auto opt_int = [&](std::string_view k, const std::optional<int>& v) {
    if (v) {
      j.num(k, static_cast<long long>(*v));
    } else {
      j.null(k);
    }
  };
  if (run.tag.empty()) {
    j.null("tag");
  } else {
    j.str("tag", run.tag);
  }
  j.str("backend", run.backend);
  j.str("dataset_name", run.dataset_name);
  j.num("request_rate", run.request_rate);
  opt_int("max_concurrency", run.max_concurrency);
  opt_int("sharegpt_output_len", run.sharegpt_output_len);
  j.num("random_input_len", static_cast<long long>(run.random_input_len));
  j.num("random_output_len", static_cast<long long>(run.random_output_len));
  j.num("random_range_ratio", run.random_range_ratio);
  if (run.server_info_json.empty()) {
    j.null("server_info");
  } else {
    j.raw("server_info", run.server_info_json);
  }
  j.num("duration", s.duration_s);
  j.num("completed", static_cast<long long>(s.completed));
  j.num("total_input_tokens", s.total_input);
  j.num("total_input_text_tokens", s.total_input);
  j.num("total_input_vision_tokens", 0LL);
  j.num("total_output_tokens", s.total_output);
  j.num("total_output_tokens_retokenized", s.total_output_retokenized);
  j.num("request_throughput", s.request_throughput);
  j.num("input_throughput", s.input_throughput);
  j.num("output_throughput", s.output_throughput);
  j.num("total_throughput", s.total_throughput);
  j.num("mean_e2e_latency_ms", s.e2e_ms.mean);
  j.num("median_e2e_latency_ms", s.e2e_ms.median);
  j.num("std_e2e_latency_ms", s.e2e_ms.std);
  j.num("p90_e2e_latency_ms", s.e2e_ms.p90);
  j.num("p99_e2e_latency_ms", s.e2e_ms.p99);
  j.num("mean_ttft_ms", s.ttft_ms.mean);
  j.num("median_ttft_ms", s.ttft_ms.median);
  j.num("std_ttft_ms", s.ttft_ms.std);
  j.num("p99_ttft_ms", s.ttft_ms.p99);
  j.num("mean_tpot_ms", s.tpot_ms.mean);
  j.num("median_tpot_ms", s.tpot_ms.median);
  j.num("std_tpot_ms", s.tpot_ms.std);
  j.num("p99_tpot_ms", s.tpot_ms.p99);
  j.num("mean_itl_ms", s.itl_ms.mean);
  j.num("median_itl_ms", s.itl_ms.median);
  j.num("std_itl_ms", s.itl_ms.std);
  j.num("p95_itl_ms", s.itl_ms.p95);
  j.num("p99_itl_ms", s.itl_ms.p99);
  j.num("concurrency", s.concurrency);
  if (run.accept_length) {
    j.num("accept_length", *run.accept_length);
  } else {
    j.null("accept_length");
  }
  j.num("max_output_tokens_per_s", s.max_output_tokens_per_s);
  j.num("max_concurrent_requests", static_cast<long long>(s.max_concurrent_requests));
  if (s.request_goodput) j.num("request_goodput", *s.request_goodput);
  if (details) {
    std::string& out = j.buffer();
    array(j, "input_lens", records, [&](const RequestRecord& r) { out += std::to_string(r.prompt_len); });
    array(j, "output_lens", std::span<const int>(s.output_lens),
          [&](int n) { out += std::to_string(n); });
    array(j, "ttfts", records, [&](const RequestRecord& r) { j.number(r.ttft_s); });
    array(j, "itls", records, [&](const RequestRecord& r) {
      out += "[";
      for (size_t i = 0; i < r.itl_s.size(); ++i) {
        if (i) out += ", ";
        j.number(r.itl_s[i]);
      }
      out += "]";
    });
    array(j, "generated_texts", records,
          [&](const RequestRecord& r) { append_json_string(out, r.generated_text); });
    array(j, "errors", records, [&](const RequestRecord& r) { append_json_string(out, r.error); });
  }
  return j.finish();
}

Status append_jsonl(const std::string& path, std::string_view line) {
  std::ofstream out(path, std::ios::app | std::ios::binary);
  if (!out) return Status::io("cannot open " + path + " for appending");
  out << line << '\n';
  out.flush();
  if (!out) return Status::io("cannot write to " + path);
  return Status::ok();
}

}  // namespace pdctl::roles

#include "roles/bench/bench_metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace pdctl::roles {

double percentile_sorted(std::span<const double> sorted, double q) {
  const size_t n = sorted.size();
  if (n == 0) return 0;
  // numpy: virtual index (n - 1) * q, then _lerp, which computes from the upper end when
  // the fraction is at least one half (so the result matches numpy to the last bit).
  const double index = static_cast<double>(n - 1) * (q / 100.0);
  const double below = std::floor(index);
  const size_t lo = std::min(static_cast<size_t>(below), n - 1);
  const size_t hi = std::min(lo + 1, n - 1);
  const double t = index - below;
  const double a = sorted[lo];
  const double b = sorted[hi];
  const double diff = b - a;
  return t >= 0.5 ? b - diff * (1 - t) : a + diff * t;
}

Distribution describe(std::vector<double> values) {
  Distribution d;
  const size_t n = values.size();
  if (n == 0) return d;
  std::sort(values.begin(), values.end());
  double sum = 0;
  for (double v : values) sum += v;
  d.mean = sum / static_cast<double>(n);
  d.median = n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
  double sq = 0;
  for (double v : values) sq += (v - d.mean) * (v - d.mean);
  d.std = std::sqrt(sq / static_cast<double>(n));
  d.p90 = percentile_sorted(values, 90);
  d.p95 = percentile_sorted(values, 95);
  d.p99 = percentile_sorted(values, 99);
  d.max = values.back();
  return d;
}

Result<GoodputSlo> parse_goodput(std::span<const std::string> pairs) {
  GoodputSlo slo;
  for (const std::string& pair : pairs) {
    auto bad = [&](const std::string& why) {
      return Status::invalid_argument("--goodput '" + pair + "': " + why +
                                      " (expected NAME:MS with NAME ttft, tpot or e2e)");
    };
    size_t colon = pair.find(':');
    if (colon == std::string::npos || pair.find(':', colon + 1) != std::string::npos) {
      return bad("not a NAME:VALUE pair");
    }
    std::string name = pair.substr(0, colon);
    std::string text = pair.substr(colon + 1);
    double ms = 0;
    auto r = std::from_chars(text.data(), text.data() + text.size(), ms);
    if (text.empty() || r.ec != std::errc() || r.ptr != text.data() + text.size() ||
        !std::isfinite(ms)) {
      return bad("the value is not a number of milliseconds");
    }
    if (ms < 0) return bad("the value must not be negative");
    if (name == "ttft") {
      slo.ttft_ms = ms;
    } else if (name == "tpot") {
      slo.tpot_ms = ms;
    } else if (name == "e2e" || name == "e2el") {
      slo.e2e_ms = ms;
    } else {
      return bad("unknown metric '" + name + "'");
    }
  }
  return slo;
}

namespace {

// Distributions are taken in seconds and then scaled, as sglang does (np.mean(x) * 1000).
Distribution in_ms(std::vector<double> seconds) {
  Distribution d = describe(std::move(seconds));
  for (double* v : {&d.mean, &d.median, &d.std, &d.p90, &d.p95, &d.p99, &d.max}) *v *= 1000;
  return d;
}

// Output tokens and requests in flight per one-second bucket from the first start, as
// sglang's calculate_metrics: token times are start + ttft + the running sum of ITLs.
void peaks(std::span<const RequestRecord> records, BenchmarkSummary& s) {
  double first = 0, last = 0;
  bool any = false;
  for (const auto& r : records) {
    if (!r.success) continue;
    first = any ? std::min(first, r.start_s) : r.start_s;
    last = any ? std::max(last, r.start_s + r.latency_s) : r.start_s + r.latency_s;
    any = true;
  }
  if (!any) return;
  const long long buckets = static_cast<long long>(std::ceil(last - first)) + 1;
  std::vector<double> tokens(static_cast<size_t>(buckets), 0.0);
  std::vector<int> in_flight(static_cast<size_t>(buckets), 0);
  auto bump = [&](double t) {
    auto b = static_cast<long long>(t - first);  // Python int(): toward zero
    if (b >= 0 && b < buckets) tokens[static_cast<size_t>(b)] += 1;
  };
  for (const auto& r : records) {
    if (!r.success) continue;
    double t = r.start_s + r.ttft_s;
    bump(t);
    for (double gap : r.itl_s) {
      t += gap;
      bump(t);
    }
    auto from = static_cast<long long>(r.start_s - first);
    auto to = std::min(static_cast<long long>(r.start_s + r.latency_s - first) + 1, buckets);
    for (long long b = from; b < to; ++b) ++in_flight[static_cast<size_t>(b)];
  }
  s.max_output_tokens_per_s = *std::max_element(tokens.begin(), tokens.end());
  s.max_concurrent_requests = *std::max_element(in_flight.begin(), in_flight.end());
}

}  // namespace

BenchmarkSummary summarize(std::span<const RequestRecord> records, double duration_s,
                           const GoodputSlo& slo, const BenchTokenizer* tokenizer) {
  BenchmarkSummary s;
  s.duration_s = duration_s;
  std::vector<double> ttfts, tpots, itls, e2es;
  s.output_lens.reserve(records.size());
  for (const auto& r : records) {
    if (!r.success) {
      ++s.failed;
      s.output_lens.push_back(0);
      continue;
    }
    ++s.completed;
    s.output_lens.push_back(r.output_len);
    s.total_output += r.output_len;
    s.total_input += r.prompt_len;
    if (tokenizer && r.keep_text) {
      s.total_output_retokenized +=
          static_cast<long long>(tokenizer->encode(r.generated_text, false).size());
    }
    // TPOT leaves out the first token; vLLM's goodput takes it as 0 for one token.
    double tpot = 0;
    if (r.output_len > 1) {
      tpot = (r.latency_s - r.ttft_s) / (r.output_len - 1);
      tpots.push_back(tpot);
    }
    itls.insert(itls.end(), r.itl_s.begin(), r.itl_s.end());
    ttfts.push_back(r.ttft_s);
    e2es.push_back(r.latency_s);
    if (slo.any()) {
      bool good = (!slo.ttft_ms || r.ttft_s <= *slo.ttft_ms / 1000) &&
                  (!slo.tpot_ms || tpot <= *slo.tpot_ms / 1000) &&
                  (!slo.e2e_ms || r.latency_s <= *slo.e2e_ms / 1000);
      if (good) ++s.good_completed;
    }
  }
  double latency_sum = 0;
  for (double v : e2es) latency_sum += v;
  // A zero duration (nothing measured) gives zero rates rather than infinities.
  auto per_s = [&](double x) { return duration_s > 0 ? x / duration_s : 0.0; };
  s.request_throughput = per_s(s.completed);
  s.input_throughput = per_s(static_cast<double>(s.total_input));
  s.output_throughput = per_s(static_cast<double>(s.total_output));
  s.output_throughput_retokenized = per_s(static_cast<double>(s.total_output_retokenized));
  s.total_throughput = per_s(static_cast<double>(s.total_input + s.total_output));
  s.total_throughput_retokenized =
      per_s(static_cast<double>(s.total_input + s.total_output_retokenized));
  s.concurrency = per_s(latency_sum);
  if (slo.any()) s.request_goodput = per_s(s.good_completed);
  s.ttft_ms = in_ms(std::move(ttfts));
  s.tpot_ms = in_ms(std::move(tpots));
  s.itl_ms = in_ms(std::move(itls));
  s.e2e_ms = in_ms(std::move(e2es));
  peaks(records, s);
  return s;
}

}  // namespace pdctl::roles

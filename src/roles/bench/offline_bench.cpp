// `pdctl bench --offline`: one batch through the engine, no server (as
// sglang.bench_one_batch and llama-bench). Random prompt ids; prefill of the whole batch in
// one step, then output_len - 1 decode steps, greedy. Reports tokens/s (mean ± std over
// --repeat runs), the memory bandwidth decode achieved against this machine's measured read
// bandwidth, and peak RSS.
#include <immintrin.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <memory>
#include <random>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "engine/cpu/thread_pool.h"
#include "engine/model_runner.h"
#include "engine/model_writer.h"
#include "roles/bench/benches.h"

namespace pdctl::roles {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct Stats {
  double mean = 0, std = 0;
};
Stats stats(const std::vector<double>& v) {
  Stats s;
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  for (double x : v) s.std += (x - s.mean) * (x - s.mean);
  s.std = v.size() > 1 ? std::sqrt(s.std / static_cast<double>(v.size() - 1)) : 0;
  return s;
}

int64_t peak_rss_bytes() {
  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<int64_t>(ru.ru_maxrss) * 1024;
}

// This machine's read bandwidth with `threads` threads: the best of a few passes over a
// buffer much larger than the caches. The reference the decode bandwidth is compared to.
double measure_read_gb_per_s(int threads) {
  const size_t n = (size_t{1} << 30) / 8;
  std::vector<uint64_t> buf(n);
  for (size_t i = 0; i < n; ++i) buf[i] = i;
  engine::ThreadPool pool(threads);
  std::vector<uint64_t> sums(static_cast<size_t>(pool.size()));
  double best = 0;
  for (int pass = 0; pass < 3; ++pass) {
    const auto t0 = Clock::now();
    pool.parallel_for(static_cast<int64_t>(n / 16), [&](int64_t b, int64_t e, int ti) {
      // Four independent 256-bit sums of 128-byte strides: loads, not adds, bound the loop.
      __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
      const __m256i* p = reinterpret_cast<const __m256i*>(buf.data());
      for (int64_t i = b * 4; i < e * 4; i += 4) {
        s0 = _mm256_add_epi64(s0, _mm256_loadu_si256(p + i));
        s1 = _mm256_add_epi64(s1, _mm256_loadu_si256(p + i + 1));
        s2 = _mm256_add_epi64(s2, _mm256_loadu_si256(p + i + 2));
        s3 = _mm256_add_epi64(s3, _mm256_loadu_si256(p + i + 3));
      }
      alignas(32) uint64_t lanes[4];
      _mm256_store_si256(reinterpret_cast<__m256i*>(lanes),
                         _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3)));
      sums[static_cast<size_t>(ti)] += lanes[0] + lanes[1] + lanes[2] + lanes[3];
    });
    best = std::max(best, static_cast<double>(n * 8) / seconds_since(t0) / 1e9);
  }
  volatile uint64_t sink = 0;  // keeps the sums alive
  for (uint64_t s : sums) sink = sink + s;
  return best;
}

int32_t argmax(std::span<const float> v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

struct RunResult {
  double prefill_s = 0, decode_s = 0;
  int64_t decode_kv_bytes = 0;  // KV bytes read by all decode steps
};

// One prefill of the whole batch plus output_len - 1 decode steps.
Result<RunResult> run_once(engine::ModelRunner& r, const std::vector<std::vector<int32_t>>& prompts, int output_len) {
  kv::KvPool& pool = r.kv_pool();
  const size_t b = prompts.size();
  std::vector<std::vector<int32_t>> pages(b);
  for (size_t i = 0; i < b; ++i) {
    PDCTL_ASSIGN_OR_RETURN(pages[i], pool.allocate(pool.pages_for_tokens(static_cast<int64_t>(prompts[i].size()) + output_len)));
  }
  RunResult rr;
  std::vector<engine::SequenceInput> batch(b);
  std::vector<int32_t> last(b);
  engine::ForwardOutput out;
  for (size_t i = 0; i < b; ++i) batch[i] = {prompts[i], 0, pages[i], false};
  auto t0 = Clock::now();
  Status st = r.forward(batch, out);
  rr.prefill_s = seconds_since(t0);
  for (size_t i = 0; i < b && st.is_ok(); ++i) last[i] = argmax(out.last(i));
  const int64_t bytes_per_token = static_cast<int64_t>(pool.geometry().bytes_per_token());
  t0 = Clock::now();
  for (int step = 1; step < output_len && st.is_ok(); ++step) {
    for (size_t i = 0; i < b; ++i) {
      const int32_t pos = static_cast<int32_t>(prompts[i].size()) + step - 1;
      batch[i] = {std::span<const int32_t>(&last[i], 1), pos, pages[i], false};
      rr.decode_kv_bytes += (pos + 1) * bytes_per_token;
    }
    st = r.forward(batch, out);
    for (size_t i = 0; i < b && st.is_ok(); ++i) last[i] = argmax(out.last(i));
  }
  rr.decode_s = seconds_since(t0);
  for (auto& p : pages) (void)pool.release(p);
  if (!st.is_ok()) return st;
  return rr;
}

}  // namespace

int run_offline_bench(const BenchOptions& o) {
  if (o.model_path.empty()) {
    spdlog::error("--offline needs --model-path (a GGUF file, an HF directory, or with --load-format dummy a preset: tiny, llama-1b)");
    return 2;
  }
  engine::EngineOptions eo;
  eo.model_path = o.model_path;
  eo.load_format = o.load_format;
  eo.dtype = o.dtype;
  eo.threads = o.threads;
  eo.seed = static_cast<uint64_t>(o.seed);
  eo.page_size = 16;
  const int64_t per_seq = static_cast<int64_t>(o.input_len) + o.output_len;
  eo.max_total_tokens = (per_seq + eo.page_size) * o.batch_size;
  eo.context_length = static_cast<int>(per_seq + 1);  // the bench needs no more than this
  if (!o.save_gguf.empty()) eo.max_total_tokens = eo.page_size;  // nothing is run
  const auto load_start = Clock::now();
  auto runner = engine::ModelRunner::create(eo);
  if (!runner.has_value()) {
    spdlog::error("{}", runner.status().message());
    return 1;
  }
  engine::ModelRunner& r = **runner;
  const double load_s = seconds_since(load_start);
  const auto& cfg = r.config();
  if (!o.save_gguf.empty()) {
    Status st = engine::write_gguf_model(r.model().loaded(), o.save_gguf);
    if (!st.is_ok()) {
      spdlog::error("{}", st.message());
      return 1;
    }
    spdlog::info("wrote {} ({} weights)", o.save_gguf, engine::dtype_name(cfg.weight_dtype));
    return 0;
  }
  std::mt19937_64 rng(static_cast<uint64_t>(o.seed));
  std::uniform_int_distribution<int32_t> tok(3, static_cast<int32_t>(cfg.vocab_size - 1));
  std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(o.batch_size));
  for (auto& p : prompts) {
    p.resize(static_cast<size_t>(o.input_len));
    for (auto& t : p) t = tok(rng);
  }
  // Warm-up: pages the weights in and sizes the scratch buffers.
  {
    std::vector<std::vector<int32_t>> w(prompts.size());
    for (size_t i = 0; i < w.size(); ++i) w[i].assign(prompts[i].begin(), prompts[i].begin() + std::min(o.input_len, 16));
    auto wr = run_once(r, w, 2);
    if (!wr.has_value()) {
      spdlog::error("warm-up: {}", wr.status().message());
      return 1;
    }
  }
  std::vector<double> prefill_tps, decode_tps, decode_gbps;
  const int64_t weight_bytes = r.model().loaded().matmul_weight_bytes();
  for (int rep = 0; rep < o.repeat; ++rep) {
    auto rr = run_once(r, prompts, o.output_len);
    if (!rr.has_value()) {
      spdlog::error("{}", rr.status().message());
      return 1;
    }
    const double ptps = static_cast<double>(o.batch_size) * o.input_len / rr->prefill_s;
    prefill_tps.push_back(ptps);
    const int steps = o.output_len - 1;
    double dtps = 0, gbps = 0;
    if (steps > 0) {
      dtps = static_cast<double>(o.batch_size) * steps / rr->decode_s;
      gbps = (static_cast<double>(weight_bytes) * steps + static_cast<double>(rr->decode_kv_bytes)) / rr->decode_s / 1e9;
      decode_tps.push_back(dtps);
      decode_gbps.push_back(gbps);
    }
    spdlog::info("run {}/{}: prefill {:.1f} tok/s ({:.2f} s), decode {:.2f} tok/s ({:.2f} s, {:.1f} GB/s)", rep + 1,
                 o.repeat, ptps, rr->prefill_s, dtps, rr->decode_s, gbps);
  }
  const int64_t rss = peak_rss_bytes();  // before the bandwidth probe's buffer
  const double machine_gbps = measure_read_gb_per_s(o.threads);
  const Stats p = stats(prefill_tps);
  const Stats d = decode_tps.empty() ? Stats{} : stats(decode_tps);
  const Stats g = decode_gbps.empty() ? Stats{} : stats(decode_gbps);
  fmt::print("model            {} ({}, {}, {:.1f}M parameters, {:.3f} GB of weights)\n", o.model_path,
             engine::arch_name(cfg.arch), engine::dtype_name(cfg.weight_dtype),
             static_cast<double>(cfg.num_parameters()) / 1e6, static_cast<double>(r.model().loaded().weight_bytes()) / 1e9);
  fmt::print("batch            {} x input {} + output {}, threads {}, repeat {}, load {:.1f} s\n", o.batch_size,
             o.input_len, o.output_len, o.threads, o.repeat, load_s);
  fmt::print("prefill          {:.2f} ± {:.2f} tokens/s\n", p.mean, p.std);
  fmt::print("decode           {:.2f} ± {:.2f} tokens/s\n", d.mean, d.std);
  fmt::print("decode bandwidth {:.2f} ± {:.2f} GB/s = {:.0f}% of the measured read bandwidth ({:.1f} GB/s)\n", g.mean,
             g.std, machine_gbps > 0 ? 100 * g.mean / machine_gbps : 0.0, machine_gbps);
  fmt::print("peak RSS         {:.2f} GB (KV pool {:.1f} MB)\n", static_cast<double>(rss) / 1e9,
             static_cast<double>(r.kv_pool().bytes()) / 1e6);
  if (!o.output_file.empty()) {
    nlohmann::ordered_json j;
    j["bench"] = "offline";
    j["model_path"] = o.model_path;
    j["load_format"] = o.load_format;
    j["weight_dtype"] = engine::dtype_name(cfg.weight_dtype);
    j["threads"] = o.threads;
    j["batch_size"] = o.batch_size;
    j["input_len"] = o.input_len;
    j["output_len"] = o.output_len;
    j["repeat"] = o.repeat;
    j["prefill_tokens_per_s"] = p.mean;
    j["prefill_tokens_per_s_std"] = p.std;
    j["decode_tokens_per_s"] = d.mean;
    j["decode_tokens_per_s_std"] = d.std;
    j["decode_gb_per_s"] = g.mean;
    j["machine_read_gb_per_s"] = machine_gbps;
    j["decode_bandwidth_fraction"] = machine_gbps > 0 ? g.mean / machine_gbps : 0.0;
    j["peak_rss_bytes"] = rss;
    j["weight_bytes"] = r.model().loaded().weight_bytes();
    j["kv_pool_bytes"] = r.kv_pool().bytes();
    std::ofstream f(o.output_file, std::ios::app);
    f << j.dump() << "\n";
    if (!f) {
      spdlog::error("{}: write failed", o.output_file);
      return 1;
    }
  }
  return 0;
}

}  // namespace pdctl::roles

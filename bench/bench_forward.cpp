// bench_forward: where the forward pass spends its time, against the matmul kernels and the
// memory it reads, all measured in the same process and interleaved (a shared machine's load
// changes by the second, so only numbers taken side by side compare).
//
// Per repetition, one after the other:
//   step     one decode step of the model (LlamaModel::forward, one token, context --ctx)
//   matmuls  the same step's matmuls only, same weights, same order, same kernels
//   weights  a plain streaming read of those same weight bytes (same pages): the ceiling
//   anon     a streaming read of a 1 GiB anonymous buffer (as `bench --offline` probes)
// Each is reported as the median of wall time and of process CPU time / threads, with the
// per-op breakdown of the step (a Backend decorator times every op).
//
//   bench_forward [--model llama-1b|PATH.gguf] [--threads N] [--ctx N] [--reps N]
//                 [--prefill] [--no-anon]
#include "engine/cpu/matmul_kernels.h"  // PDCTL_MATMUL_AVX512
#if PDCTL_MATMUL_AVX512
#include "engine/cpu/simd_avx512.h"  // first: see there
#endif

#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench_machine.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/cpu/thread_pool.h"
#include "engine/llama_model.h"
#include "engine/model_loader.h"

using namespace pdctl;
using namespace pdctl::engine;

namespace {

// Times every op of the wrapped backend (wall seconds, summed per op name while on).
class TimingBackend final : public Backend {
 public:
  explicit TimingBackend(Backend& b) : b_(b) {}
  bool on = false;
  std::map<std::string, double> wall;
  std::map<std::string, int64_t> calls;

  const char* name() const override { return b_.name(); }
  bool supports_weight_dtype(DType d) const override { return b_.supports_weight_dtype(d); }
  bool supports_kv_dtype(kv::KvDType d) const override { return b_.supports_kv_dtype(d); }
  bool host_memory() const override { return b_.host_memory(); }
  Result<Tensor> load_matrix(const WeightRef& w) override { return b_.load_matrix(w); }
  Result<Tensor> load_vector(const WeightRef& w) override { return b_.load_vector(w); }
  void begin_step() override { timed("begin_step", [&] { b_.begin_step(); }); }
  Tensor scratch(int64_t rows, int64_t cols) override { return b_.scratch(rows, cols); }
  Status create_kv_pool(const kv::KvGeometry& g, const kv::KvMemoryProvider& p) override {
    return b_.create_kv_pool(g, p);
  }
  kv::KvPool* kv_pool() override { return b_.kv_pool(); }
  Status set_batch(const BatchLayout& l) override {
    Status s;
    timed("set_batch", [&] { s = b_.set_batch(l); });
    return s;
  }
  void embedding(const Tensor& t, std::span<const int32_t> tok, Tensor& o) override {
    timed("embedding", [&] { b_.embedding(t, tok, o); });
  }
  void matmul(const Tensor& w, const Tensor& x, Tensor& y) override {
    char key[64];
    std::snprintf(key, sizeof key, "matmul %lldx%lld", static_cast<long long>(w.rows), static_cast<long long>(w.cols));
    timed(key, [&] { b_.matmul(w, x, y); });
  }
  void add_bias(Tensor& y, const Tensor& b) override { timed("add_bias", [&] { b_.add_bias(y, b); }); }
  void rms_norm(const Tensor& x, const Tensor& w, float eps, Tensor& o) override {
    timed("rms_norm", [&] { b_.rms_norm(x, w, eps, o); });
  }
  void rms_norm_heads(Tensor& x, int64_t hd, const Tensor& w, float eps) override {
    timed("rms_norm_heads", [&] { b_.rms_norm_heads(x, hd, w, eps); });
  }
  void rope(Tensor& x, int64_t hd, const RopeConfig& r) override { timed("rope", [&] { b_.rope(x, hd, r); }); }
  void store_kv(int l, const Tensor& k, const Tensor& v) override { timed("store_kv", [&] { b_.store_kv(l, k, v); }); }
  void attention(int l, const Tensor& q, int64_t nh, float sc, Tensor& o) override {
    timed("attention", [&] { b_.attention(l, q, nh, sc, o); });
  }
  void swiglu(const Tensor& g, const Tensor& u, Tensor& o) override { timed("swiglu", [&] { b_.swiglu(g, u, o); }); }
  void add(Tensor& x, const Tensor& y) override { timed("add", [&] { b_.add(x, y); }); }
  void get_rows(const Tensor& x, std::span<const int32_t> r, Tensor& o) override {
    timed("get_rows", [&] { b_.get_rows(x, r, o); });
  }
  Status synchronize() override { return b_.synchronize(); }
  Status read(const Tensor& t, float* h) override {
    Status s;
    timed("read", [&] { s = b_.read(t, h); });
    return s;
  }

 private:
  template <class F>
  void timed(const char* key, F&& f) {
    if (!on) return f();
    const double t0 = bench::now_s();
    f();
    wall[key] += bench::now_s() - t0;
    calls[key] += 1;
  }
  Backend& b_;
};

// Sum of bytes [p, p + n) read as 64-byte lines, 4 independent sums (loads bound the loop).
uint64_t read_bytes(const uint8_t* p, int64_t n) {
#if PDCTL_MATMUL_AVX512
  __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 256 <= n; i += 256) {
    s0 = _mm512_add_epi64(s0, _mm512_loadu_si512(p + i));
    s1 = _mm512_add_epi64(s1, _mm512_loadu_si512(p + i + 64));
    s2 = _mm512_add_epi64(s2, _mm512_loadu_si512(p + i + 128));
    s3 = _mm512_add_epi64(s3, _mm512_loadu_si512(p + i + 192));
  }
  alignas(64) uint64_t l[8];
  _mm512_store_si512(l, _mm512_add_epi64(_mm512_add_epi64(s0, s1), _mm512_add_epi64(s2, s3)));
  uint64_t s = 0;
  for (uint64_t v : l) s += v;
  for (; i < n; ++i) s += p[i];
  return s;
#else
  uint64_t s = 0;
  for (int64_t i = 0; i < n; ++i) s += p[i];
  return s;
#endif
}

struct Sample {
  double wall = 0, cpu = 0;
};

template <class F>
Sample measure(F&& f, int threads) {
  const double t0 = bench::now_s(), c0 = bench::cpu_s();
  f();
  return {bench::now_s() - t0, (bench::cpu_s() - c0) / threads};
}

struct Series {
  std::vector<double> wall, cpu;
  void add(Sample s) {
    wall.push_back(s.wall);
    cpu.push_back(s.cpu);
  }
  double mw() const { return bench::median(wall); }
  double mc() const { return bench::median(cpu); }
};

// The process's memory in huge pages (AnonHugePages, FilePmdMapped) from smaps_rollup, kB.
std::string huge_pages() {
  std::FILE* f = std::fopen("/proc/self/smaps_rollup", "r");
  if (!f) return "?";
  std::string out;
  char line[256];
  while (std::fgets(line, sizeof line, f)) {
    long kb = 0;
    char key[64];
    if (std::sscanf(line, "%63[^:]: %ld kB", key, &kb) == 2 &&
        (std::strcmp(key, "AnonHugePages") == 0 || std::strcmp(key, "FilePmdMapped") == 0 || std::strcmp(key, "Rss") == 0))
      out += std::string(out.empty() ? "" : ", ") + key + " " + std::to_string(kb / 1024) + " MiB";
  }
  std::fclose(f);
  return out;
}

long minor_faults() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_path = "llama-1b";
  int threads = 1, ctx = 512, reps = 15;
  bool prefill = false, anon = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return std::string(argv[++i]);
    };
    if (a == "--model") model_path = next();
    else if (a == "--threads") threads = std::stoi(next());
    else if (a == "--ctx") ctx = std::stoi(next());
    else if (a == "--reps") reps = std::stoi(next());
    else if (a == "--prefill") prefill = true;
    else if (a == "--no-anon") anon = false;
    else {
      std::fprintf(stderr, "usage: bench_forward [--model llama-1b|PATH.gguf] [--threads N] [--ctx N] [--reps N] "
                           "[--prefill] [--no-anon]\n");
      return a == "--help" ? 0 : 2;
    }
  }
  LoadOptions lo;
  lo.model_path = model_path;
  lo.load_format = model_path.ends_with(".gguf") ? "gguf" : "dummy";
  const double tl = bench::now_s();
  auto loaded = load_model(lo);
  if (!loaded.has_value()) {
    std::fprintf(stderr, "%s\n", loaded.status().to_string().c_str());
    return 1;
  }
  const ModelConfig cfg = loaded->config;
  const std::vector<const WeightRef*> mats = [&] {
    std::vector<const WeightRef*> v;
    for (const LayerWeights& l : loaded->weights.layers)
      for (const WeightRef* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) v.push_back(w);
    v.push_back(&loaded->weights.output);
    return v;
  }();
  std::vector<WeightRef> mat_copy;
  for (const WeightRef* w : mats) mat_copy.push_back(*w);
  CpuBackend cpu(threads);
  TimingBackend tb(cpu);
  kv::KvGeometry g;
  g.num_layers = cfg.num_layers;
  g.num_kv_heads = cfg.num_kv_heads;
  g.head_dim = cfg.head_dim;
  g.page_size = 16;
  g.num_pages = (ctx + reps + 64) / 16 + 2;
  g.dtype = cfg.weight_dtype == DType::kF32 ? kv::KvDType::kF32 : kv::KvDType::kF16;
  if (Status s = tb.create_kv_pool(g, {}); !s.is_ok()) {
    std::fprintf(stderr, "%s\n", s.to_string().c_str());
    return 1;
  }
  auto model_r = LlamaModel::create(std::move(*loaded), tb);
  if (!model_r.has_value()) {
    std::fprintf(stderr, "%s\n", model_r.status().to_string().c_str());
    return 1;
  }
  LlamaModel& model = **model_r;
  std::printf("model %s, threads %d, load %.1f s\n", model_path.c_str(), threads, bench::now_s() - tl);
  kv::KvPool& pool = *tb.kv_pool();
  auto pages = pool.allocate(g.num_pages - 1);
  if (!pages.has_value()) return 1;

  std::mt19937 rng(1);
  std::vector<int32_t> prompt(static_cast<size_t>(ctx));
  for (auto& t : prompt) t = static_cast<int32_t>(3 + rng() % static_cast<uint32_t>(cfg.vocab_size - 3));
  ForwardOutput out;
  // Warm-up: pages the weights in.
  {
    const std::vector<int32_t> w(prompt.begin(), prompt.begin() + 16);
    SequenceInput in{w, 0, *pages, false};
    if (!model.forward({&in, 1}, out).is_ok()) return 1;
    int32_t tok = 5;
    SequenceInput d{{&tok, 1}, 16, *pages, false};
    if (!model.forward({&d, 1}, out).is_ok()) return 1;
  }
  std::printf("memory: %s\n", huge_pages().c_str());
  // The prompt.
  {
    tb.on = prefill;
    SequenceInput in{prompt, 0, *pages, false};
    const long f0 = minor_faults();
    const Sample s = measure([&] { (void)model.forward({&in, 1}, out); }, threads);
    std::printf("prefill %d tokens: %.2f s wall (%.1f tok/s), cpu/threads %.2f s (%.1f tok/s), minor faults %ld\n", ctx,
                s.wall, ctx / s.wall, s.cpu, ctx / s.cpu, minor_faults() - f0);
    if (prefill) {
      double tot = 0;
      for (auto& [k, v] : tb.wall) tot += v;
      for (auto& [k, v] : tb.wall)
        std::printf("  %-22s %8.1f ms %5.1f%%  (%lld calls)\n", k.c_str(), v * 1e3, 100 * v / tot,
                    static_cast<long long>(tb.calls[k]));
    }
    tb.wall.clear();
    tb.calls.clear();
    tb.on = false;
  }

  // Buffers of the matmul-only pass: the step's activations, never read back.
  const int64_t H = cfg.hidden_size, F = cfg.intermediate_size;
  std::vector<float> xin(static_cast<size_t>(std::max(H, F)), 0.01f), yout(static_cast<size_t>(cfg.vocab_size));
  int64_t wbytes = 0;
  for (const WeightRef& w : mat_copy) wbytes += w.bytes();
  ThreadPool& tp = cpu.thread_pool();
  auto matmul_pass = [&] {
    for (const WeightRef& w : mat_copy) {
      Tensor wt{w.dtype, w.rows(), w.cols(), const_cast<void*>(w.data)};
      Tensor x{DType::kF32, 1, w.cols(), xin.data()};
      Tensor y{DType::kF32, 1, w.rows(), yout.data()};
      cpu.matmul(wt, x, y);
    }
  };
  volatile uint64_t sink = 0;
  auto weights_pass = [&] {
    for (const WeightRef& w : mat_copy) {
      const int64_t n = w.bytes();
      std::vector<uint64_t> part(static_cast<size_t>(threads));
      tp.parallel_for(threads, [&](int64_t b, int64_t, int) {
        const int64_t lo = n * b / threads / 64 * 64, hi = b + 1 == threads ? n : n * (b + 1) / threads / 64 * 64;
        part[static_cast<size_t>(b)] = read_bytes(static_cast<const uint8_t*>(w.data) + lo, hi - lo);
      });
      for (uint64_t v : part) sink = sink + v;
    }
  };
  const int64_t anon_bytes = int64_t{1} << 30;
  std::unique_ptr<uint8_t[]> abuf;
  if (anon) {
    abuf.reset(new uint8_t[static_cast<size_t>(anon_bytes)]);
    std::memset(abuf.get(), 1, static_cast<size_t>(anon_bytes));
  }
  auto anon_pass = [&] {
    std::vector<uint64_t> part(static_cast<size_t>(threads));
    tp.parallel_for(threads, [&](int64_t b, int64_t, int) {
      part[static_cast<size_t>(b)] = read_bytes(abuf.get() + anon_bytes * b / threads, anon_bytes / threads);
    });
    for (uint64_t v : part) sink = sink + v;
  };

  Series step, mm, wr, an;
  std::map<std::string, std::vector<double>> per_op;
  int32_t tok = 7;
  long faults = 0;
  for (int r = 0; r < reps; ++r) {
    SequenceInput d{{&tok, 1}, ctx + r, *pages, false};
    tb.wall.clear();
    tb.on = true;
    const long f0 = minor_faults();
    step.add(measure([&] { (void)model.forward({&d, 1}, out); }, threads));
    faults += minor_faults() - f0;
    tb.on = false;
    for (auto& [k, v] : tb.wall) per_op[k].push_back(v);
    tok = static_cast<int32_t>(std::max_element(out.logits.begin(), out.logits.end()) - out.logits.begin());
    mm.add(measure(matmul_pass, threads));
    wr.add(measure(weights_pass, threads));
    if (anon) an.add(measure(anon_pass, threads));
  }
  const double gb = static_cast<double>(wbytes) / 1e9;
  std::printf("decode at context %d, %d reps, medians (wall | cpu/threads); weights %.3f GB per step\n", ctx, reps, gb);
  auto line = [&](const char* what, const Series& s, double bytes_gb) {
    std::printf("  %-9s %8.2f ms %6.2f GB/s | %8.2f ms %6.2f GB/s\n", what, s.mw() * 1e3, bytes_gb / s.mw(),
                s.mc() * 1e3, bytes_gb / s.mc());
  };
  line("step", step, gb);
  line("matmuls", mm, gb);
  line("weights", wr, gb);
  if (anon) line("anon 1GiB", an, static_cast<double>(anon_bytes) / 1e9);
  std::printf("  ratios of medians: step/matmuls %.3f (cpu %.3f), matmuls/weights %.3f (cpu %.3f)\n",
              step.mw() / mm.mw(), step.mc() / mm.mc(), mm.mw() / wr.mw(), mm.mc() / wr.mc());
  // Per-pair ratios (each rep's step against the same rep's matmul pass), median.
  std::vector<double> rs, rm;
  for (size_t i = 0; i < step.wall.size(); ++i) {
    rs.push_back(step.wall[i] / mm.wall[i]);
    rm.push_back(mm.wall[i] / wr.wall[i]);
  }
  std::printf("  per-rep ratios, median: step/matmuls %.3f, matmuls/weights %.3f; minor faults per step %.1f\n",
              bench::median(rs), bench::median(rm), static_cast<double>(faults) / reps);
  double tot = 0;
  for (auto& [k, v] : per_op) tot += bench::median(v);
  std::printf("  step by op (median ms per step, wall):\n");
  for (auto& [k, v] : per_op)
    std::printf("    %-22s %8.3f ms %5.1f%%\n", k.c_str(), bench::median(v) * 1e3, 100 * bench::median(v) / tot);
  return static_cast<int>(sink & 0);
}

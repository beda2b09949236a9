// The CPU backend's ops other than matmul against plain double-precision definitions:
// attention over paged KV of every dtype and head size, for decode, prefill, chunks and
// mixed batches, on 1 and 2 threads.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "engine/cpu/cpu_backend.h"
#include "engine/cpu/simd.h"

using namespace pdctl;
using namespace pdctl::engine;

namespace {

struct SeqSpec {
  int32_t start_pos, num_tokens;
};

// Runs one attention step of `seqs` and checks every output against the definition over
// the K/V values as stored (rounded to the KV dtype). Returns the largest error relative to
// the largest |v|.
double check_attention(int threads, int64_t hd, int64_t heads, int64_t kv_heads, kv::KvDType dtype,
                       const std::vector<SeqSpec>& seqs, uint32_t seed) {
  CpuBackend be(threads);
  kv::KvGeometry g;
  g.num_layers = 2;
  g.num_kv_heads = static_cast<int>(kv_heads);
  g.head_dim = static_cast<int>(hd);
  g.page_size = 16;
  g.num_pages = 64;
  g.dtype = dtype;
  REQUIRE(be.create_kv_pool(g, {}).is_ok());
  kv::KvPool& pool = *be.kv_pool();
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);

  // Page tables: pages handed out in a shuffled order (tables are not runs).
  auto all = pool.allocate(g.num_pages);
  REQUIRE(all.has_value());
  std::vector<int32_t> free_pages = *all;
  std::shuffle(free_pages.begin(), free_pages.end(), rng);
  std::vector<std::vector<int32_t>> tables(seqs.size());
  BatchLayout layout;
  int64_t T = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    const int n = pool.pages_for_tokens(seqs[s].start_pos + seqs[s].num_tokens);
    tables[s].assign(free_pages.end() - n, free_pages.end());
    free_pages.resize(free_pages.size() - static_cast<size_t>(n));
    BatchLayout::Seq q;
    q.start_pos = seqs[s].start_pos;
    q.num_tokens = seqs[s].num_tokens;
    q.first_token = T;
    q.pages = tables[s];
    layout.seqs.push_back(q);
    for (int32_t i = 0; i < q.num_tokens; ++i) layout.positions.push_back(q.start_pos + i);
    T += q.num_tokens;
  }
  layout.num_tokens = T;
  REQUIRE(be.set_batch(layout).is_ok());

  const int layer = 1;
  const size_t tb = g.token_bytes();
  const size_t esize = kv::kv_dtype_size(dtype);
  // Earlier positions' K/V written straight into the pool; the step's own via store_kv.
  std::vector<float> tmp(static_cast<size_t>(kv_heads * hd));
  for (size_t s = 0; s < seqs.size(); ++s) {
    for (int32_t p = 0; p < seqs[s].start_pos; ++p) {
      const int32_t page = tables[s][static_cast<size_t>(p / g.page_size)];
      for (kv::KvPart part : {kv::KvPart::kK, kv::KvPart::kV}) {
        for (float& v : tmp) v = normal(rng);
        simd::f32_to_kv(dtype, tmp.data(), pool.block(layer, part, page) + static_cast<size_t>(p % g.page_size) * tb,
                        kv_heads * hd);
      }
    }
  }
  be.begin_step();
  Tensor q = be.scratch(T, heads * hd), k = be.scratch(T, kv_heads * hd), v = be.scratch(T, kv_heads * hd);
  Tensor out = be.scratch(T, heads * hd);
  for (float* p : {q.f32(), k.f32(), v.f32()})
    for (int64_t i = 0; i < T * (p == q.f32() ? heads : kv_heads) * hd; ++i) p[i] = normal(rng);
  be.store_kv(layer, k, v);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  be.attention(layer, q, heads, scale, out);

  // The definition, in double, over the stored values.
  auto load = [&](kv::KvPart part, size_t s, int64_t j, int64_t h) {
    const int32_t page = tables[s][static_cast<size_t>(j / g.page_size)];
    std::vector<float> r(static_cast<size_t>(hd));
    simd::kv_to_f32(dtype, pool.block(layer, part, page) + static_cast<size_t>(j % g.page_size) * tb + h * hd * esize,
                    r.data(), hd);
    return r;
  };
  double max_err = 0, max_v = 0;
  const int64_t group = heads / kv_heads;
  for (size_t s = 0; s < seqs.size(); ++s) {
    const auto& sq = layout.seqs[s];
    for (int32_t i = 0; i < sq.num_tokens; ++i) {
      const int64_t t = sq.first_token + i, pos = sq.start_pos + i;
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t kh = h / group;
        const float* qr = q.f32() + t * q.cols + h * hd;
        std::vector<double> sc(static_cast<size_t>(pos + 1));
        for (int64_t j = 0; j <= pos; ++j) {
          const auto kr = load(kv::KvPart::kK, s, j, kh);
          double d = 0;
          for (int64_t e = 0; e < hd; ++e) d += static_cast<double>(qr[e]) * kr[static_cast<size_t>(e)];
          sc[static_cast<size_t>(j)] = d * scale;
        }
        const double mx = *std::max_element(sc.begin(), sc.end());
        double sum = 0;
        for (double& x : sc) sum += (x = std::exp(x - mx));
        std::vector<double> o(static_cast<size_t>(hd), 0.0);
        for (int64_t j = 0; j <= pos; ++j) {
          const auto vr = load(kv::KvPart::kV, s, j, kh);
          for (int64_t e = 0; e < hd; ++e) {
            o[static_cast<size_t>(e)] += sc[static_cast<size_t>(j)] / sum * vr[static_cast<size_t>(e)];
            max_v = std::max(max_v, std::fabs(static_cast<double>(vr[static_cast<size_t>(e)])));
          }
        }
        const float* got = out.f32() + t * out.cols + h * hd;
        for (int64_t e = 0; e < hd; ++e)
          max_err = std::max(max_err, std::fabs(got[e] - o[static_cast<size_t>(e)]));
      }
    }
  }
  return max_err / max_v;
}

}  // namespace

TEST_CASE("cpu attention: equals the definition for every KV dtype, head size and batch shape") {
  const std::vector<std::vector<SeqSpec>> batches = {
      {{37, 1}},                       // decode
      {{0, 50}},                       // a prompt, several query blocks
      {{30, 21}},                      // a chunk after earlier chunks
      {{5, 1}, {0, 17}, {70, 3}, {16, 1}},  // mixed prompts and decode tokens
  };
  struct Heads {
    int64_t hd, heads, kv_heads;
  };
  const Heads shapes[] = {{8, 8, 4}, {16, 4, 4}, {40, 6, 2}, {64, 32, 8}, {128, 4, 1}, {256, 2, 2}};
  uint32_t seed = 1;
  for (kv::KvDType dtype : {kv::KvDType::kF32, kv::KvDType::kF16, kv::KvDType::kBF16}) {
    for (const Heads& h : shapes) {
      for (size_t b = 0; b < batches.size(); ++b) {
        for (int threads : {1, 2}) {
          INFO("dtype " << std::string(kv::kv_dtype_name(dtype)) << ", head_dim " << h.hd << ", heads " << h.heads << "/"
                        << h.kv_heads << ", batch " << b << ", threads " << threads);
          // Float accumulation over at most ~100 keys and 256 dimensions.
          CHECK(check_attention(threads, h.hd, h.heads, h.kv_heads, dtype, batches[b], seed++) < 1e-5);
        }
      }
    }
  }
}

// The CPU backend's attention: causal GQA over each sequence's KV pages.
#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/cpu/cpu_backend.h"
#include "engine/cpu/simd.h"

namespace pdctl::engine {
namespace {
// Query tokens of one sequence handled together: each K/V row is located and converted
// once for all of them (prefill), instead of once per token.
constexpr int32_t kQueryBlock = 16;
}  // namespace

void CpuBackend::attention(int layer, const Tensor& q, int64_t num_heads, float scale, Tensor& out) {
  const kv::KvGeometry& g = kv_->geometry();
  const int64_t hd = g.head_dim;
  const int64_t nkv = g.num_kv_heads;
  const int64_t group = num_heads / nkv;
  const size_t tb = g.token_bytes();
  const size_t head_bytes = static_cast<size_t>(hd) * kv::kv_dtype_size(g.dtype);
  const bool f32_kv = g.dtype == kv::KvDType::kF32;

  // Items: (sequence, block of query tokens, kv head); the query heads of a group share
  // each K/V row too.
  struct Item {
    int32_t seq, block, kv_head;
  };
  std::vector<Item> items;
  int64_t work = 0;  // rough multiply-adds, to decide whether threads pay off
  for (size_t s = 0; s < batch_.seqs.size(); ++s) {
    const auto& seq = batch_.seqs[s];
    const int32_t blocks = (seq.num_tokens + kQueryBlock - 1) / kQueryBlock;
    for (int32_t b = 0; b < blocks; ++b)
      for (int32_t h = 0; h < nkv; ++h) items.push_back({static_cast<int32_t>(s), b, h});
    work += static_cast<int64_t>(seq.num_tokens) * (seq.start_pos + seq.num_tokens) * num_heads * hd * 2;
  }

  auto row = [&](kv::KvPart part, const BatchLayout::Seq& seq, int64_t j, int64_t kh) {
    const int32_t page = seq.pages[static_cast<size_t>(j / g.page_size)];
    return kv_->block(layer, part, page) + static_cast<size_t>(j % g.page_size) * tb + static_cast<size_t>(kh) * head_bytes;
  };

  auto run_item = [&](const Item& it, std::vector<float>& scores, std::vector<float>& buf) {
    const auto& seq = batch_.seqs[static_cast<size_t>(it.seq)];
    const int64_t first = static_cast<int64_t>(it.block) * kQueryBlock;          // within the sequence
    const int64_t nq = std::min<int64_t>(kQueryBlock, seq.num_tokens - first);
    const int64_t pos0 = seq.start_pos + first;                                  // position of query 0
    const int64_t n_ctx = pos0 + nq;                                             // keys the last query sees
    const int64_t rows = nq * group;
    scores.resize(static_cast<size_t>(rows * n_ctx));
    const int64_t t0 = seq.first_token + first;
    auto qrow = [&](int64_t i, int64_t h) { return q.f32() + (t0 + i) * q.cols + (it.kv_head * group + h) * hd; };
    for (int64_t j = 0; j < n_ctx; ++j) {
      const uint8_t* kp = row(kv::KvPart::kK, seq, j, it.kv_head);
      const float* k = reinterpret_cast<const float*>(kp);
      if (!f32_kv) {
        simd::kv_to_f32(g.dtype, kp, buf.data(), hd);
        k = buf.data();
      }
      for (int64_t i = std::max<int64_t>(0, j - pos0); i < nq; ++i) {  // causal: queries at or after j
        for (int64_t h = 0; h < group; ++h) {
          scores[static_cast<size_t>((i * group + h) * n_ctx + j)] = simd::dot(qrow(i, h), k, hd) * scale;
        }
      }
    }
    for (int64_t i = 0; i < nq; ++i) {
      const int64_t n = pos0 + i + 1;
      for (int64_t h = 0; h < group; ++h) {
        float* sc = scores.data() + (i * group + h) * n_ctx;
        const float mx = *std::max_element(sc, sc + n);
        double sum = 0;  // as ggml's soft_max: the sum in double
        for (int64_t j = 0; j < n; ++j) {
          sc[j] = std::exp(sc[j] - mx);
          sum += sc[j];
        }
        const float inv = static_cast<float>(1.0 / sum);
        for (int64_t j = 0; j < n; ++j) sc[j] *= inv;
        float* o = out.f32() + (t0 + i) * out.cols + (it.kv_head * group + h) * hd;
        std::fill(o, o + hd, 0.0f);
      }
    }
    for (int64_t j = 0; j < n_ctx; ++j) {
      const uint8_t* vp = row(kv::KvPart::kV, seq, j, it.kv_head);
      const float* v = reinterpret_cast<const float*>(vp);
      if (!f32_kv) {
        simd::kv_to_f32(g.dtype, vp, buf.data(), hd);
        v = buf.data();
      }
      for (int64_t i = std::max<int64_t>(0, j - pos0); i < nq; ++i) {
        for (int64_t h = 0; h < group; ++h) {
          float* o = out.f32() + (t0 + i) * out.cols + (it.kv_head * group + h) * hd;
          simd::axpy(scores[static_cast<size_t>((i * group + h) * n_ctx + j)], v, o, hd);
        }
      }
    }
  };

  const int nthreads = pool_.size();
  const int64_t n = static_cast<int64_t>(items.size());
  if (nthreads == 1 || work < (1 << 16)) {
    std::vector<float> scores, buf(static_cast<size_t>(hd));
    for (const Item& it : items) run_item(it, scores, buf);
    return;
  }
  // Items are interleaved over threads: causal rows grow with position, so contiguous
  // ranges would give the last thread most of the work.
  pool_.run_on_all([&](int ti) {
    std::vector<float> scores, buf(static_cast<size_t>(hd));
    for (int64_t i = ti; i < n; i += nthreads) run_item(items[static_cast<size_t>(i)], scores, buf);
  });
}

}  // namespace pdctl::engine

// The CPU backend's attention: causal GQA over each sequence's KV pages.
#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/cpu/cpu_backend.h"
#include "engine/cpu/simd.h"

namespace pdctl::engine {

void CpuBackend::attention(int layer, const Tensor& q, int64_t num_heads, float scale, Tensor& out) {
  const kv::KvGeometry& g = kv_->geometry();
  const int64_t hd = g.head_dim;
  const int64_t nkv = g.num_kv_heads;
  const int64_t group = num_heads / nkv;
  const int64_t T = batch_.num_tokens;
  const size_t tb = g.token_bytes();
  const size_t head_bytes = static_cast<size_t>(hd) * kv::kv_dtype_size(g.dtype);
  const bool f32_kv = g.dtype == kv::KvDType::kF32;

  // One item = (token, kv head): the query heads of a group share each K/V row read.
  auto run_item = [&](int64_t item, std::vector<float>& scores, std::vector<float>& kbuf) {
    const int64_t t = item / nkv, kh = item % nkv;
    const auto& seq = batch_.seqs[static_cast<size_t>(token_seq_[static_cast<size_t>(t)])];
    const int64_t n_ctx = batch_.positions[static_cast<size_t>(t)] + 1;
    scores.resize(static_cast<size_t>(group * n_ctx));
    const float* qh = q.f32() + t * q.cols + kh * group * hd;
    for (int64_t j = 0; j < n_ctx; ++j) {
      const int32_t page = seq.pages[static_cast<size_t>(j / g.page_size)];
      const uint8_t* kp = kv_->block(layer, kv::KvPart::kK, page) + static_cast<size_t>(j % g.page_size) * tb +
                          static_cast<size_t>(kh) * head_bytes;
      const float* k = reinterpret_cast<const float*>(kp);
      if (!f32_kv) {
        simd::kv_to_f32(g.dtype, kp, kbuf.data(), hd);
        k = kbuf.data();
      }
      for (int64_t h = 0; h < group; ++h) scores[static_cast<size_t>(h * n_ctx + j)] = simd::dot(qh + h * hd, k, hd) * scale;
    }
    std::vector<float> inv(static_cast<size_t>(group));
    for (int64_t h = 0; h < group; ++h) {
      float* sc = scores.data() + h * n_ctx;
      const float mx = *std::max_element(sc, sc + n_ctx);
      double sum = 0;  // as ggml's soft_max: the sum in double
      for (int64_t j = 0; j < n_ctx; ++j) {
        sc[j] = std::exp(sc[j] - mx);
        sum += sc[j];
      }
      inv[static_cast<size_t>(h)] = static_cast<float>(1.0 / sum);
      for (int64_t j = 0; j < n_ctx; ++j) sc[j] *= inv[static_cast<size_t>(h)];
    }
    float* oh = out.f32() + t * out.cols + kh * group * hd;
    std::fill(oh, oh + group * hd, 0.0f);
    for (int64_t j = 0; j < n_ctx; ++j) {
      const int32_t page = seq.pages[static_cast<size_t>(j / g.page_size)];
      const uint8_t* vp = kv_->block(layer, kv::KvPart::kV, page) + static_cast<size_t>(j % g.page_size) * tb +
                          static_cast<size_t>(kh) * head_bytes;
      const float* v = reinterpret_cast<const float*>(vp);
      if (!f32_kv) {
        simd::kv_to_f32(g.dtype, vp, kbuf.data(), hd);
        v = kbuf.data();
      }
      for (int64_t h = 0; h < group; ++h) simd::axpy(scores[static_cast<size_t>(h * n_ctx + j)], v, oh + h * hd, hd);
    }
  };

  const int64_t items = T * nkv;
  int64_t work = 0;  // rough multiply-adds, to decide whether threads pay off
  for (const auto& s : batch_.seqs) work += static_cast<int64_t>(s.num_tokens) * (s.start_pos + s.num_tokens);
  work *= nkv * group * hd * 2;
  const int nthreads = pool_.size();
  if (nthreads == 1 || work < (1 << 16)) {
    std::vector<float> scores, kbuf(static_cast<size_t>(hd));
    for (int64_t i = 0; i < items; ++i) run_item(i, scores, kbuf);
    return;
  }
  // Items are interleaved over threads: causal rows grow with position, so contiguous
  // ranges would give the last thread most of the work.
  pool_.run_on_all([&](int ti) {
    std::vector<float> scores, kbuf(static_cast<size_t>(hd));
    for (int64_t i = ti; i < items; i += nthreads) run_item(i, scores, kbuf);
  });
}

}  // namespace pdctl::engine

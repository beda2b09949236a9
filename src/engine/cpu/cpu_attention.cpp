// The CPU backend's attention: causal GQA over each sequence's KV pages.
//
// Work items are (sequence, block of up to 16 query tokens, KV head); an item's query rows are
// its tokens x the query heads of the group, so each K/V row is located and converted once for
// all of them. Per item, in three passes over a scores matrix S[rows][keys]:
//   1. S = scale * Q K^T: K is converted and transposed 16 keys at a time (AVX-512: lanes run
//      along keys, a register block of query rows broadcasts one q element per FMA; no
//      horizontal sums);
//   2. softmax of each row over its causal range (as ggml: exp(s - max), the sum in double),
//      zeroing the keys past the row's position;
//   3. O = P V: lanes along head_dim, a register block of rows x head_dim.
// The generic (PORTABLE) path does the same with plain loops.
#include "engine/cpu/matmul_kernels.h"  // PDCTL_MATMUL_AVX512
#if PDCTL_MATMUL_AVX512
#include "engine/cpu/simd_avx512.h"  // first: see there
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <utility>
#include <cmath>
#include <vector>

#include "engine/cpu/cpu_backend.h"
#include "engine/cpu/simd.h"

namespace pdctl::engine {
namespace {

constexpr int32_t kQueryBlock = 16;
constexpr int64_t kKeyTile = 16;

struct ItemGeometry {
  kv::KvPool* pool;
  int layer;
  int64_t hd, group;
  size_t tb, head_bytes;
  const BatchLayout::Seq* seq;
  int kv_head;
  const uint8_t* row(kv::KvPart part, int64_t j) const {
    const int64_t ps = pool->geometry().page_size;
    const int32_t page = seq->pages[static_cast<size_t>(j / ps)];
    return pool->block(layer, part, page) + static_cast<size_t>(j % ps) * tb + static_cast<size_t>(kv_head) * head_bytes;
  }
  // The K and V rows of keys [0, n) in k[] and v[] (one division per page, not per key).
  void rows(int64_t n, const uint8_t** k, const uint8_t** v) const {
    const int64_t ps = pool->geometry().page_size;
    const size_t off = static_cast<size_t>(kv_head) * head_bytes;
    for (int64_t j0 = 0, p = 0; j0 < n; j0 += ps, ++p) {
      const int32_t page = seq->pages[static_cast<size_t>(p)];
      const uint8_t* kb = pool->block(layer, kv::KvPart::kK, page) + off;
      const uint8_t* vb = pool->block(layer, kv::KvPart::kV, page) + off;
      for (int64_t i = 0; i < ps && j0 + i < n; ++i) {
        k[j0 + i] = kb + static_cast<size_t>(i) * tb;
        v[j0 + i] = vb + static_cast<size_t>(i) * tb;
      }
    }
  }
};

// Per-thread buffers of an item (they only grow).
struct Scratch {
  std::vector<float> q, s, kt, buf;
  std::vector<const uint8_t*> krows, vrows;
};
Scratch& scratch_of_thread() {
  thread_local Scratch s;
  return s;
}
void grow(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
}

// Row r of S is query token i = r / group, head h = r % group; its causal range is keys
// [0, pos0 + i]. S has `sp` floats per row (n_ctx rounded up to whole key tiles).

// ------------------------------------------------------------------ generic
void softmax_row_generic(float* sc, int64_t n, int64_t n_ctx) {
  const float mx = *std::max_element(sc, sc + n);
  double sum = 0;  // as ggml's soft_max: the sum in double
  for (int64_t j = 0; j < n; ++j) {
    sc[j] = std::exp(sc[j] - mx);
    sum += sc[j];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t j = 0; j < n; ++j) sc[j] *= inv;
  std::fill(sc + n, sc + n_ctx, 0.0f);
}

void item_generic(const ItemGeometry& g, kv::KvDType dtype, const float* q, int64_t q_stride, int64_t nq,
                  int64_t pos0, float scale, float* out, int64_t out_stride) {
  Scratch& sb = scratch_of_thread();
  const int64_t hd = g.hd, group = g.group, rows = nq * group, n_ctx = pos0 + nq;
  grow(sb.s, rows * n_ctx);
  grow(sb.buf, hd);
  float* S = sb.s.data();
  auto qrow = [&](int64_t r) { return q + (r / group) * q_stride + (r % group) * hd; };
  const bool f32 = dtype == kv::KvDType::kF32;
  for (int64_t j = 0; j < n_ctx; ++j) {
    const uint8_t* kp = g.row(kv::KvPart::kK, j);
    const float* k = reinterpret_cast<const float*>(kp);
    if (!f32) {
      simd::kv_to_f32(dtype, kp, sb.buf.data(), hd);
      k = sb.buf.data();
    }
    for (int64_t r = std::max<int64_t>(0, j - pos0) * group; r < rows; ++r) S[r * n_ctx + j] = simd::dot(qrow(r), k, hd) * scale;
  }
  for (int64_t r = 0; r < rows; ++r) {
    softmax_row_generic(S + r * n_ctx, pos0 + r / group + 1, n_ctx);
    float* o = out + (r / group) * out_stride + (r % group) * hd;
    std::fill(o, o + hd, 0.0f);
  }
  for (int64_t j = 0; j < n_ctx; ++j) {
    const uint8_t* vp = g.row(kv::KvPart::kV, j);
    const float* v = reinterpret_cast<const float*>(vp);
    if (!f32) {
      simd::kv_to_f32(dtype, vp, sb.buf.data(), hd);
      v = sb.buf.data();
    }
    for (int64_t r = std::max<int64_t>(0, j - pos0) * group; r < rows; ++r)
      simd::axpy(S[r * n_ctx + j], v, out + (r / group) * out_stride + (r % group) * hd, hd);
  }
}

#if PDCTL_MATMUL_AVX512
// ------------------------------------------------------------------ AVX-512
__mmask16 lanes(int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xffff) : n <= 0 ? 0 : static_cast<__mmask16>((1u << n) - 1);
}

// 16 KV elements (masked) as floats.
template <kv::KvDType D>
inline __m512 load_kv(const uint8_t* p, __mmask16 m) {
  if constexpr (D == kv::KvDType::kF32) {
    return _mm512_maskz_loadu_ps(m, p);
  } else if constexpr (D == kv::KvDType::kF16) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
  } else {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
  }
}

// exp(x) for x <= 0 (scores minus their row's maximum), Cephes' expf: x = n ln2 + r,
// |r| <= ln2/2, a degree-6 polynomial for e^r, times 2^n (vscalefps: underflows to 0 below
// about -103). Within 2 ulp of the correctly rounded result.
inline __m512 exp_ps(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

void softmax_row(float* sc, int64_t n, int64_t n_ctx) {
  __m512 mx = _mm512_set1_ps(-INFINITY);
  for (int64_t j = 0; j < n; j += 16) mx = _mm512_mask_max_ps(mx, lanes(n - j), mx, _mm512_loadu_ps(sc + j));
  const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
  __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 k = lanes(n - j);
    const __m512 e = _mm512_maskz_mov_ps(k, exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, sc + j), m)));
    _mm512_mask_storeu_ps(sc + j, k, e);
    s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
    s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
  }
  const __m512 inv = _mm512_set1_ps(static_cast<float>(1.0 / _mm512_reduce_add_pd(_mm512_add_pd(s0, s1))));
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 k = lanes(n - j);
    _mm512_mask_storeu_ps(sc + j, k, _mm512_mul_ps(_mm512_loadu_ps(sc + j), inv));
  }
  std::fill(sc + n, sc + n_ctx, 0.0f);
}

// Kt[d][16] = K[key][d] for the 16 keys whose rows are krows[0..n_keys) (zero past n_keys).
template <kv::KvDType D>
void pack_keys(const uint8_t* const* krows, int64_t n_keys, int64_t hd, float* kt) {
  const size_t esize = kv::kv_dtype_size(D);
  for (int64_t c = 0; c < hd; c += 16) {
    const __mmask16 m = lanes(hd - c);
    __m512 v[16];
    for (int key = 0; key < 16; ++key)
      v[key] = key < n_keys ? load_kv<D>(krows[key] + c * esize, m) : _mm512_setzero_ps();
    kernels::avx512::transpose16(v);
    const int64_t nd = std::min<int64_t>(16, hd - c);
    for (int64_t d = 0; d < nd; ++d) _mm512_store_ps(kt + (c + d) * 16, v[d]);
  }
}

// Software prefetch of a head's row (rows of different keys are token_bytes apart, a stride
// the hardware prefetchers follow poorly while the weights stream past; measured below).
inline void prefetch_row(const uint8_t* p, size_t bytes) {
  for (size_t o = 0; o < bytes; o += 64) _mm_prefetch(reinterpret_cast<const char*>(p + o), _MM_HINT_T0);
}

// S[r][16 keys] = scale * Q[r] . Kt for RB rows (q rows hd apart).
template <int RB>
inline void qk_rows(const float* q, int64_t hd, const float* kt, float scale, float* s, int64_t sp) {
  __m512 acc[RB];
  for (int r = 0; r < RB; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t d = 0; d < hd; ++d) {
    const __m512 k = _mm512_load_ps(kt + d * 16);
    for (int r = 0; r < RB; ++r) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(q[r * hd + d]), k, acc[r]);
  }
  const __m512 sc = _mm512_set1_ps(scale);
  for (int r = 0; r < RB; ++r) _mm512_storeu_ps(s + r * sp, _mm512_mul_ps(acc[r], sc));
}

constexpr int kQkRows = 8;
using QkFn = void (*)(const float*, int64_t, const float*, float, float*, int64_t);
template <int... I>
constexpr std::array<QkFn, sizeof...(I)> qk_table(std::integer_sequence<int, I...>) {
  return {&qk_rows<I + 1>...};
}
constexpr auto kQk = qk_table(std::make_integer_sequence<int, kQkRows>{});

// O[r][hd] = sum_j P[r][j] V[j] for RB rows and keys [0, n_keys); NV vectors per head, the
// lanes of vector c that are in the head given by m[c].
template <kv::KvDType D, int NV, int RB>
void pv_rows(const uint8_t* const* vrows, size_t head_bytes, const float* p, int64_t sp, int64_t n_keys,
             const __mmask16* m, float* const* out) {
  __m512 acc[RB][NV];
  for (int r = 0; r < RB; ++r)
    for (int c = 0; c < NV; ++c) acc[r][c] = _mm512_setzero_ps();
  const size_t esize = kv::kv_dtype_size(D);
  constexpr int64_t kAhead = 8;
  for (int64_t j = 0; j < n_keys; ++j) {
    if (j + kAhead < n_keys) prefetch_row(vrows[j + kAhead], head_bytes);
    const uint8_t* vp = vrows[j];
    __m512 v[NV];
    for (int c = 0; c < NV; ++c) v[c] = load_kv<D>(vp + c * 16 * esize, m[c]);
    for (int r = 0; r < RB; ++r) {
      const __m512 pr = _mm512_set1_ps(p[r * sp + j]);
      for (int c = 0; c < NV; ++c) acc[r][c] = _mm512_fmadd_ps(pr, v[c], acc[r][c]);
    }
  }
  for (int r = 0; r < RB; ++r)
    for (int c = 0; c < NV; ++c) _mm512_mask_storeu_ps(out[r] + c * 16, m[c], acc[r][c]);
}

// Rows per PV block: RB x NV accumulators within 24 registers.
template <kv::KvDType D, int NV>
void pv_block(const uint8_t* const* vrows, size_t head_bytes, const float* p, int64_t sp, int64_t n_keys,
              const __mmask16* m, float* const* out, int rows) {
  constexpr int kMax = std::max(1, std::min(6, 24 / NV));
  while (rows > 0) {
    const int rb = std::min(rows, kMax);
    switch (rb) {
      case 1: pv_rows<D, NV, 1>(vrows, head_bytes, p, sp, n_keys, m, out); break;
      case 2: pv_rows<D, NV, std::min(2, kMax)>(vrows, head_bytes, p, sp, n_keys, m, out); break;
      case 3: pv_rows<D, NV, std::min(3, kMax)>(vrows, head_bytes, p, sp, n_keys, m, out); break;
      case 4: pv_rows<D, NV, std::min(4, kMax)>(vrows, head_bytes, p, sp, n_keys, m, out); break;
      case 5: pv_rows<D, NV, std::min(5, kMax)>(vrows, head_bytes, p, sp, n_keys, m, out); break;
      default: pv_rows<D, NV, kMax>(vrows, head_bytes, p, sp, n_keys, m, out); break;
    }
    rows -= rb;
    p += rb * sp;
    out += rb;
  }
}

template <kv::KvDType D>
void item_avx512(const ItemGeometry& g, const float* q, int64_t q_stride, int64_t nq, int64_t pos0, float scale,
                 float* out, int64_t out_stride) {
  Scratch& sb = scratch_of_thread();
  const int64_t hd = g.hd, group = g.group, rows = nq * group, n_ctx = pos0 + nq;
  const int64_t sp = (n_ctx + kKeyTile - 1) / kKeyTile * kKeyTile;
  grow(sb.q, rows * hd);
  grow(sb.s, rows * sp);
  grow(sb.kt, hd * kKeyTile + 16);
  if (static_cast<int64_t>(sb.krows.size()) < n_ctx) {
    sb.krows.resize(static_cast<size_t>(n_ctx));
    sb.vrows.resize(static_cast<size_t>(n_ctx));
  }
  const uint8_t** krows = sb.krows.data();
  const uint8_t** vrows = sb.vrows.data();
  g.rows(n_ctx, krows, vrows);
  float* Q = sb.q.data();
  float* S = sb.s.data();
  float* kt = sb.kt.data() + (16 - reinterpret_cast<uintptr_t>(sb.kt.data()) / 4 % 16) % 16;  // 64-byte aligned
  for (int64_t r = 0; r < rows; ++r) std::copy_n(q + (r / group) * q_stride + (r % group) * hd, hd, Q + r * hd);
  // 1. Scores, a tile of keys at a time; rows only as far as some row of the block sees them.
  for (int64_t j0 = 0; j0 < n_ctx; j0 += kKeyTile) {
    for (int64_t j = j0 + kKeyTile; j < std::min(n_ctx, j0 + 2 * kKeyTile); ++j) prefetch_row(krows[j], g.head_bytes);
    pack_keys<D>(krows + j0, std::min<int64_t>(kKeyTile, n_ctx - j0), hd, kt);
    const int64_t r_first = std::max<int64_t>(0, j0 - pos0) * group;  // rows that see key j0 or later
    for (int64_t r = r_first; r < rows; r += kQkRows) {
      const int rb = static_cast<int>(std::min<int64_t>(kQkRows, rows - r));
      kQk[static_cast<size_t>(rb - 1)](Q + r * hd, hd, kt, scale, S + r * sp + j0, sp);
    }
  }
  // 2. Softmax over each row's causal range; later keys get weight 0.
  for (int64_t r = 0; r < rows; ++r) softmax_row(S + r * sp, pos0 + r / group + 1, n_ctx);
  // 3. Output rows, a block of rows at a time over the keys the block's last row sees.
  constexpr int kPvRows = 24;
  float* outs[kPvRows];
  const int nv = static_cast<int>((hd + 15) / 16);
  __mmask16 masks[8];
  for (int c = 0; c < 8; ++c) masks[c] = lanes(hd - c * 16);
  for (int64_t r0 = 0; r0 < rows; r0 += kPvRows) {
    const int nr = static_cast<int>(std::min<int64_t>(kPvRows, rows - r0));
    for (int i = 0; i < nr; ++i) {
      const int64_t r = r0 + i;
      outs[i] = out + (r / group) * out_stride + (r % group) * hd;
    }
    const int64_t n_keys = pos0 + (r0 + nr - 1) / group + 1;
    const float* p = S + r0 * sp;
    switch (nv) {
      case 1: pv_block<D, 1>(vrows, g.head_bytes, p, sp, n_keys, masks, outs, nr); break;
      case 2: pv_block<D, 2>(vrows, g.head_bytes, p, sp, n_keys, masks, outs, nr); break;
      case 3: case 4: pv_block<D, 4>(vrows, g.head_bytes, p, sp, n_keys, masks, outs, nr); break;
      default: pv_block<D, 8>(vrows, g.head_bytes, p, sp, n_keys, masks, outs, nr); break;
    }
  }
}
#endif  // PDCTL_MATMUL_AVX512

}  // namespace

void CpuBackend::attention(int layer, const Tensor& q, int64_t num_heads, float scale, Tensor& out) {
  const kv::KvGeometry& kg = kv_->geometry();
  const int64_t hd = kg.head_dim;
  const int64_t nkv = kg.num_kv_heads;
  const int64_t group = num_heads / nkv;

  struct Item {
    int32_t seq, block, kv_head;
  };
  std::vector<Item> items;
  int64_t work = 0;  // rough multiply-adds, to decide whether threads pay off
  for (size_t s = 0; s < batch_.seqs.size(); ++s) {
    const auto& seq = batch_.seqs[s];
    const int32_t blocks = (seq.num_tokens + kQueryBlock - 1) / kQueryBlock;
    for (int32_t b = blocks - 1; b >= 0; --b)  // the longest first: better balance
      for (int32_t h = 0; h < nkv; ++h) items.push_back({static_cast<int32_t>(s), b, h});
    work += static_cast<int64_t>(seq.num_tokens) * (seq.start_pos + seq.num_tokens) * num_heads * hd * 2;
  }

  // The vector path holds a block of output rows in registers: head_dim up to 128 (8
  // vectors); wider heads take the generic path.
  bool vector_path = false;
#if PDCTL_MATMUL_AVX512
  vector_path = hd <= 128;
#endif
  auto run_item = [&](const Item& it) {
    const auto& seq = batch_.seqs[static_cast<size_t>(it.seq)];
    const int64_t first = static_cast<int64_t>(it.block) * kQueryBlock;  // within the sequence
    const int64_t nq = std::min<int64_t>(kQueryBlock, seq.num_tokens - first);
    const int64_t t0 = seq.first_token + first;
    ItemGeometry g{kv_.get(), layer, hd, group, kg.token_bytes(),
                   static_cast<size_t>(hd) * kv::kv_dtype_size(kg.dtype), &seq, it.kv_head};
    const float* qp = q.f32() + t0 * q.cols + it.kv_head * group * hd;
    float* op = out.f32() + t0 * out.cols + it.kv_head * group * hd;
    const int64_t pos0 = seq.start_pos + first;
    if (!vector_path) return item_generic(g, kg.dtype, qp, q.cols, nq, pos0, scale, op, out.cols);
#if PDCTL_MATMUL_AVX512
    switch (kg.dtype) {
      case kv::KvDType::kF32: return item_avx512<kv::KvDType::kF32>(g, qp, q.cols, nq, pos0, scale, op, out.cols);
      case kv::KvDType::kF16: return item_avx512<kv::KvDType::kF16>(g, qp, q.cols, nq, pos0, scale, op, out.cols);
      case kv::KvDType::kBF16: return item_avx512<kv::KvDType::kBF16>(g, qp, q.cols, nq, pos0, scale, op, out.cols);
    }
#endif
  };

  const int64_t n = static_cast<int64_t>(items.size());
  if (pool_.size() == 1 || work < (1 << 16)) {
    for (const Item& it : items) run_item(it);
    return;
  }
  // Items are taken one at a time from a shared counter, the longest first: causal rows grow
  // with position, and a thread that other jobs delay takes fewer.
  pool_.parallel_chunks(n, 1, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) run_item(items[static_cast<size_t>(i)]);
  });
}

}  // namespace pdctl::engine

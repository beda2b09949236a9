#include "engine/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>

#include <fmt/format.h>

#include "engine/cpu/matmul.h"
#include "engine/cpu/simd.h"

namespace pdctl::engine {
namespace {

constexpr int64_t kAlignFloats = 16;               // 64-byte rows of scratch tensors
constexpr int64_t kMinBlockFloats = 1 << 20;
constexpr int64_t kParallelWork = 1 << 15;          // below this, an op runs on one thread

float* alloc_floats(int64_t n) {
  return static_cast<float*>(::operator new[](static_cast<size_t>(n) * 4, std::align_val_t(64)));
}
void free_floats(float* p) { ::operator delete[](p, std::align_val_t(64)); }

WeightView view(const Tensor& w) { return WeightView{w.dtype, w.rows, w.cols, w.data}; }

}  // namespace

CpuBackend::CpuBackend(int threads) : pool_(threads) {}

CpuBackend::~CpuBackend() {
  for (Block& b : blocks_) free_floats(b.p);
}

bool CpuBackend::supports_weight_dtype(DType d) const {
  switch (d) {
    case DType::kF32: case DType::kF16: case DType::kBF16: case DType::kQ8_0: return true;
  }
  return false;
}

bool CpuBackend::supports_kv_dtype(kv::KvDType d) const {
  switch (d) {
    case kv::KvDType::kF32: case kv::KvDType::kF16: case kv::KvDType::kBF16: return true;
  }
  return false;
}

Result<Tensor> CpuBackend::load_matrix(const WeightRef& w) {
  if (!w.present() || w.shape.size() != 2) return Status::internal(fmt::format("{}: not a matrix", w.name));
  if (!supports_weight_dtype(w.dtype)) {
    return Status::unsupported(fmt::format("{}: the CPU backend cannot compute with {}", w.name, dtype_name(w.dtype)));
  }
  // In place: the mapping (or the dummy buffer) outlives the backend's use of it.
  return Tensor{w.dtype, w.rows(), w.cols(), const_cast<void*>(w.data)};
}

Result<Tensor> CpuBackend::load_vector(const WeightRef& w) {
  if (!w.present() || w.shape.size() != 1) return Status::internal(fmt::format("{}: not a vector", w.name));
  const int64_t n = w.shape[0];
  auto buf = std::make_unique<float[]>(static_cast<size_t>(n));
  WeightView v{w.dtype, 1, n, w.data};
  if (w.dtype == DType::kQ8_0 && n % kQ8_0BlockElems != 0) {
    return Status::unsupported(fmt::format("{}: a Q8_0 vector of {} elements", w.name, n));
  }
  dequantize_row(v, 0, buf.get());
  Tensor t{DType::kF32, 1, n, buf.get()};
  vectors_.push_back(std::move(buf));
  return t;
}

void CpuBackend::begin_step() {
  if (blocks_.size() > 1) {  // merge: the next step of this size fits one block
    for (Block& b : blocks_) free_floats(b.p);
    blocks_.clear();
    blocks_.push_back(Block{alloc_floats(step_total_), step_total_});
  }
  used_ = 0;
  step_total_ = 0;
}

Tensor CpuBackend::scratch(int64_t rows, int64_t cols) {
  const int64_t n = (rows * cols + kAlignFloats - 1) / kAlignFloats * kAlignFloats;
  if (blocks_.empty() || used_ + n > blocks_.back().cap) {
    const int64_t cap = std::max({n, kMinBlockFloats, step_total_});
    blocks_.push_back(Block{alloc_floats(cap), cap});
    used_ = 0;
  }
  float* p = blocks_.back().p + used_;
  used_ += n;
  step_total_ += n;
  return Tensor{DType::kF32, rows, cols, p};
}

Status CpuBackend::create_kv_pool(const kv::KvGeometry& g, const kv::KvMemoryProvider& provider) {
  if (!supports_kv_dtype(g.dtype)) return Status::unsupported("KV dtype not supported by the CPU backend");
  PDCTL_ASSIGN_OR_RETURN(kv_, kv::KvPool::create(g, provider));
  if (!kv_->memory().host_accessible()) {
    kv_.reset();
    return Status::invalid_argument("the CPU backend needs a KV pool in host memory");
  }
  return Status::ok();
}

Status CpuBackend::set_batch(const BatchLayout& layout) {
  if (!kv_) return Status::internal("set_batch before create_kv_pool");
  batch_ = layout;
  token_seq_.assign(static_cast<size_t>(layout.num_tokens), 0);
  for (size_t s = 0; s < layout.seqs.size(); ++s) {
    const auto& q = layout.seqs[s];
    for (int32_t i = 0; i < q.num_tokens; ++i) token_seq_[static_cast<size_t>(q.first_token + i)] = static_cast<int32_t>(s);
  }
  rope_half_ = -1;
  return Status::ok();
}

void CpuBackend::parallel(int64_t n, int64_t work_per_item, const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n * work_per_item < kParallelWork || pool_.size() == 1) {
    fn(0, n, 0);
  } else {
    pool_.parallel_chunks(n, (n + 2 * pool_.size() - 1) / (2 * pool_.size()), fn);
  }
}

void CpuBackend::embedding(const Tensor& table, std::span<const int32_t> tokens, Tensor& out) {
  const WeightView w = view(table);
  parallel(static_cast<int64_t>(tokens.size()), table.cols, [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t) dequantize_row(w, tokens[static_cast<size_t>(t)], out.f32() + t * out.cols);
  });
}

void CpuBackend::matmul(const Tensor& w, const Tensor& x, Tensor& y) {
  engine::matmul(view(w), x.f32(), x.rows, x.cols, y.f32(), y.cols, &pool_);
}

void CpuBackend::add_bias(Tensor& y, const Tensor& bias) {
  for (int64_t t = 0; t < y.rows; ++t) {
    float* r = y.f32() + t * y.cols;
    for (int64_t i = 0; i < y.cols; ++i) r[i] += bias.f32()[i];
  }
}

namespace {
// As ggml: the sum of squares in double, the scale in float, then the weight.
void rms_norm_row(const float* x, const float* w, float eps, int64_t n, float* out) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = (x[i] * scale) * w[i];
}
}  // namespace

void CpuBackend::rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
  parallel(x.rows, x.cols * 4, [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t) rms_norm_row(x.f32() + t * x.cols, weight.f32(), eps, x.cols, out.f32() + t * out.cols);
  });
}

void CpuBackend::rms_norm_heads(Tensor& x, int64_t head_dim, const Tensor& weight, float eps) {
  const int64_t heads = x.cols / head_dim;
  parallel(x.rows, x.cols * 4, [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t) {
      for (int64_t h = 0; h < heads; ++h) {
        float* r = x.f32() + t * x.cols + h * head_dim;
        rms_norm_row(r, weight.f32(), eps, head_dim, r);
      }
    }
  });
}

void CpuBackend::rope(Tensor& x, int64_t head_dim, const RopeConfig& rc) {
  const int64_t half = head_dim / 2;
  const int64_t T = batch_.num_tokens;
  if (rope_half_ != half) {
    // As ggml's rope cache: the angle of pair i is p * theta^(-2i/d) / factor_i, the
    // power taken by repeated multiplication in float.
    rope_cos_.resize(static_cast<size_t>(T * half));
    rope_sin_.resize(static_cast<size_t>(T * half));
    const float theta_scale = std::pow(rc.theta, -2.0f / static_cast<float>(head_dim));
    for (int64_t t = 0; t < T; ++t) {
      float theta = static_cast<float>(batch_.positions[static_cast<size_t>(t)]);
      for (int64_t i = 0; i < half; ++i) {
        const float ff = rc.freq_factors.empty() ? 1.0f : rc.freq_factors[static_cast<size_t>(i)];
        const float a = theta / ff;
        rope_cos_[static_cast<size_t>(t * half + i)] = std::cos(a);
        rope_sin_[static_cast<size_t>(t * half + i)] = std::sin(a);
        theta *= theta_scale;
      }
    }
    rope_half_ = half;
  }
  const int64_t heads = x.cols / head_dim;
  const bool adjacent = rc.style == RopeStyle::kAdjacentPairs;
  parallel(x.rows, x.cols * 4, [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t) {
      const float* c = rope_cos_.data() + t * half;
      const float* s = rope_sin_.data() + t * half;
      for (int64_t h = 0; h < heads; ++h) {
        float* r = x.f32() + t * x.cols + h * head_dim;
        for (int64_t i = 0; i < half; ++i) {
          float* a = adjacent ? r + 2 * i : r + i;
          float* bb = adjacent ? r + 2 * i + 1 : r + i + half;
          const float x0 = *a, x1 = *bb;
          *a = x0 * c[i] - x1 * s[i];
          *bb = x0 * s[i] + x1 * c[i];
        }
      }
    }
  });
}

void CpuBackend::store_kv(int layer, const Tensor& k, const Tensor& v) {
  const kv::KvGeometry& g = kv_->geometry();
  const int64_t row = static_cast<int64_t>(g.num_kv_heads) * g.head_dim;
  const size_t tb = g.token_bytes();
  for (const auto& s : batch_.seqs) {
    for (int32_t i = 0; i < s.num_tokens; ++i) {
      const int64_t pos = s.start_pos + i;
      const int32_t page = s.pages[static_cast<size_t>(pos / g.page_size)];
      const size_t off = static_cast<size_t>(pos % g.page_size) * tb;
      const int64_t t = s.first_token + i;
      simd::f32_to_kv(g.dtype, k.f32() + t * row, kv_->block(layer, kv::KvPart::kK, page) + off, row);
      simd::f32_to_kv(g.dtype, v.f32() + t * row, kv_->block(layer, kv::KvPart::kV, page) + off, row);
    }
  }
}

void CpuBackend::swiglu(const Tensor& gate, const Tensor& up, Tensor& out) {
  const int64_t n = gate.rows * gate.cols;
  parallel(n, 8, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) {
      const float g = gate.f32()[i];
      out.f32()[i] = g / (1.0f + std::exp(-g)) * up.f32()[i];
    }
  });
}

void CpuBackend::add(Tensor& x, const Tensor& y) {
  const int64_t n = x.rows * x.cols;
  for (int64_t i = 0; i < n; ++i) x.f32()[i] += y.f32()[i];
}

void CpuBackend::get_rows(const Tensor& x, std::span<const int32_t> rows, Tensor& out) {
  for (size_t i = 0; i < rows.size(); ++i) {
    std::memcpy(out.f32() + static_cast<int64_t>(i) * out.cols, x.f32() + rows[i] * x.cols, static_cast<size_t>(x.cols) * 4);
  }
}

Status CpuBackend::read(const Tensor& t, float* host) {
  std::memcpy(host, t.data, static_cast<size_t>(t.rows * t.cols) * 4);
  return Status::ok();
}

Result<std::unique_ptr<Backend>> create_backend(const std::string& device, int threads) {
  if (device == "cpu") return std::unique_ptr<Backend>(std::make_unique<CpuBackend>(threads));
  return Status::unsupported(fmt::format("device '{}': this build has only the CPU backend", device));
}

}  // namespace pdctl::engine

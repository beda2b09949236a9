#pragma once
// The CPU backend: weights used in place from the mapped files (F32, F16, BF16, Q8_0,
// multiplied by matmul()), f32 activations in a per-step arena, the KV pool in host
// memory, and a thread pool (--threads) shared by every op.
#include <memory>
#include <vector>

#include "engine/backend.h"
#include "engine/cpu/thread_pool.h"

namespace pdctl::engine {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads);
  ~CpuBackend() override;
  CpuBackend(const CpuBackend&) = delete;
  CpuBackend& operator=(const CpuBackend&) = delete;

  int threads() const { return pool_.size(); }
  ThreadPool& thread_pool() { return pool_; }

  const char* name() const override { return "cpu"; }
  bool supports_weight_dtype(DType d) const override;
  bool supports_kv_dtype(kv::KvDType d) const override;
  bool host_memory() const override { return true; }

  Result<Tensor> load_matrix(const WeightRef& w) override;
  Result<Tensor> load_vector(const WeightRef& w) override;
  void begin_step() override;
  Tensor scratch(int64_t rows, int64_t cols) override;

  Status create_kv_pool(const kv::KvGeometry& g, const kv::KvMemoryProvider& provider) override;
  kv::KvPool* kv_pool() override { return kv_.get(); }

  Status set_batch(const BatchLayout& layout) override;
  void embedding(const Tensor& table, std::span<const int32_t> tokens, Tensor& out) override;
  void matmul(const Tensor& w, const Tensor& x, Tensor& y) override;
  void add_bias(Tensor& y, const Tensor& bias) override;
  void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) override;
  void rms_norm_heads(Tensor& x, int64_t head_dim, const Tensor& weight, float eps) override;
  void rope(Tensor& x, int64_t head_dim, const RopeConfig& rope) override;
  void store_kv(int layer, const Tensor& k, const Tensor& v) override;
  void attention(int layer, const Tensor& q, int64_t num_heads, float scale, Tensor& out) override;
  void swiglu(const Tensor& gate, const Tensor& up, Tensor& out) override;
  void add(Tensor& x, const Tensor& y) override;
  void get_rows(const Tensor& x, std::span<const int32_t> rows, Tensor& out) override;
  Status synchronize() override { return Status::ok(); }
  Status read(const Tensor& t, float* host) override;

 private:
  // Runs fn over [0, n) on the pool when there is enough work, else on this thread.
  void parallel(int64_t n, int64_t work_per_item, const std::function<void(int64_t, int64_t, int)>& fn);

  ThreadPool pool_;
  std::unique_ptr<kv::KvPool> kv_;
  // Scratch arena: blocks handed out by bump allocation; when a step needs more than the
  // first block, the next begin_step() merges them into one block of the total.
  struct Block {
    float* p = nullptr;
    int64_t cap = 0;
  };
  std::vector<Block> blocks_;
  int64_t used_ = 0;                 // floats used in the last block
  int64_t step_total_ = 0;           // floats handed out this step
  std::vector<std::unique_ptr<float[]>> vectors_;  // f32 copies of 1-D weights
  BatchLayout batch_;
  std::vector<int32_t> token_seq_;   // sequence of each token
  // RoPE cos/sin per token and pair for the current step (computed on first use).
  std::vector<float> rope_cos_, rope_sin_;
  int64_t rope_half_ = -1;
};

}  // namespace pdctl::engine

#pragma once
// The interface between the model code and the hardware. A backend owns the tensors (the
// weights, used in place where it can; the activations of a step; the KV pool) and
// implements the operations of a Llama-family forward pass on them. The model code
// (llama_model.cpp) only calls this interface, so a CUDA backend slots in without
// touching it. Pattern as NIXL's backend engines: what every backend must do is pure
// virtual; what differs is asked through capability queries.
//
// Errors: operations on tensors do not return a status (a GPU backend queues them); a
// backend records the first failure and reports it from synchronize() and read(). The
// model validates all inputs (token ids, positions, page tables) before the first op.
//
// Threading: one thread (the engine thread) calls a backend; the backend may use its own
// worker threads inside an operation.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "engine/dtype.h"
#include "engine/model_config.h"
#include "engine/weights.h"
#include "kv/kv_pool.h"

namespace pdctl::engine {

// A 2-D row-major tensor owned by a backend ([rows][cols]; a vector has rows == 1).
// Host memory for the CPU backend, device memory for a GPU backend.
struct Tensor {
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  void* data = nullptr;
  float* f32() const { return static_cast<float*>(data); }
};

// Where the tokens of one step are: set once per step, read by rope, store_kv and
// attention. Tokens are numbered in batch order: sequence 0's, then sequence 1's, ...
struct BatchLayout {
  struct Seq {
    int32_t start_pos = 0;               // position of the sequence's first new token
    int32_t num_tokens = 0;              // new tokens this step
    int64_t first_token = 0;             // index of its first token in the batch
    std::span<const int32_t> pages;      // page table, covering start_pos + num_tokens
  };
  std::vector<Seq> seqs;
  std::vector<int32_t> positions;        // per token
  int64_t num_tokens = 0;
};

struct RopeConfig {
  RopeStyle style = RopeStyle::kHalves;
  float theta = 10000.0f;
  std::vector<float> freq_factors;       // per pair, divides the angle; empty: none
};

class Backend {
 public:
  virtual ~Backend() = default;

  // ---- what this backend is and can do
  virtual const char* name() const = 0;
  virtual bool supports_weight_dtype(DType d) const = 0;
  virtual bool supports_kv_dtype(kv::KvDType d) const = 0;
  // Whether tensors and the KV pool are host memory the caller may read directly.
  virtual bool host_memory() const = 0;

  // ---- tensors
  // A weight matrix (matmul operand, embedding table): used in place where possible.
  virtual Result<Tensor> load_matrix(const WeightRef& w) = 0;
  // A 1-D weight (norm, bias): converted to f32 (they are small).
  virtual Result<Tensor> load_vector(const WeightRef& w) = 0;
  // Starts a step: scratch tensors of the previous step become invalid.
  virtual void begin_step() = 0;
  // An f32 activation [rows][cols], valid until the next begin_step(); contents undefined.
  virtual Tensor scratch(int64_t rows, int64_t cols) = 0;

  // ---- the KV pool (its pages are managed by the caller through kv_pool())
  virtual Status create_kv_pool(const kv::KvGeometry& g, const kv::KvMemoryProvider& provider = {}) = 0;
  virtual kv::KvPool* kv_pool() = 0;

  // ---- a step
  virtual Status set_batch(const BatchLayout& layout) = 0;

  // out[t] = table[tokens[t]]
  virtual void embedding(const Tensor& table, std::span<const int32_t> tokens, Tensor& out) = 0;
  // y[t][r] = sum_k x[t][k] * w[r][k]; w in any supported weight dtype.
  virtual void matmul(const Tensor& w, const Tensor& x, Tensor& y) = 0;
  // y[t] += bias
  virtual void add_bias(Tensor& y, const Tensor& bias) = 0;
  // out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * weight   (out may be x)
  virtual void rms_norm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) = 0;
  // The same for every head_dim-wide slice of every row, in place (Qwen3's q/k norm).
  virtual void rms_norm_heads(Tensor& x, int64_t head_dim, const Tensor& weight, float eps) = 0;
  // Rotates every head of x ([tokens][heads * head_dim]) by its token's position.
  virtual void rope(Tensor& x, int64_t head_dim, const RopeConfig& rope) = 0;
  // Writes each token's k and v rows into its (page, slot) of `layer` in the pool.
  virtual void store_kv(int layer, const Tensor& k, const Tensor& v) = 0;
  // Causal GQA attention of q ([tokens][num_heads * head_dim]) over each sequence's pages
  // of `layer`, positions 0..own position; out has q's shape.
  virtual void attention(int layer, const Tensor& q, int64_t num_heads, float scale, Tensor& out) = 0;
  // out = silu(gate) * up  (out may be gate)
  virtual void swiglu(const Tensor& gate, const Tensor& up, Tensor& out) = 0;
  // x += y
  virtual void add(Tensor& x, const Tensor& y) = 0;
  // out[i] = x[rows[i]]
  virtual void get_rows(const Tensor& x, std::span<const int32_t> rows, Tensor& out) = 0;

  // Waits for queued work; the first error since the last call.
  virtual Status synchronize() = 0;
  // Copies an f32 tensor to host memory (the sampler's input); implies synchronize().
  virtual Status read(const Tensor& t, float* host) = 0;
};

// The backend for `device` ("cpu"; "cuda" where built) with `threads` compute threads
// (0: one per core).
Result<std::unique_ptr<Backend>> create_backend(const std::string& device, int threads);

}  // namespace pdctl::engine

#include "engine/llama_model.h"

#include <cmath>

#include <fmt/format.h>

namespace pdctl::engine {

Result<std::unique_ptr<LlamaModel>> LlamaModel::create(LoadedModel model, Backend& backend) {
  std::unique_ptr<LlamaModel> m(new LlamaModel(std::move(model), backend));
  PDCTL_RETURN_IF_ERROR(m->bind());
  return m;
}

Status LlamaModel::bind() {
  const ModelConfig& c = model_.config;
  const ModelWeights& w = model_.weights;
  auto matrix = [&](const WeightRef& r, Tensor& t) -> Status {
    PDCTL_ASSIGN_OR_RETURN(t, backend_.load_matrix(r));
    return Status::ok();
  };
  auto vector = [&](const WeightRef& r, Tensor& t) -> Status {
    if (!r.present()) return Status::ok();
    PDCTL_ASSIGN_OR_RETURN(t, backend_.load_vector(r));
    return Status::ok();
  };
  PDCTL_RETURN_IF_ERROR(matrix(w.tok_embd, tok_embd_));
  PDCTL_RETURN_IF_ERROR(matrix(w.output, output_));
  PDCTL_RETURN_IF_ERROR(vector(w.output_norm, output_norm_));
  layers_.resize(static_cast<size_t>(c.num_layers));
  for (int l = 0; l < c.num_layers; ++l) {
    const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
    Layer& L = layers_[static_cast<size_t>(l)];
    PDCTL_RETURN_IF_ERROR(vector(lw.attn_norm, L.attn_norm));
    PDCTL_RETURN_IF_ERROR(matrix(lw.wq, L.wq));
    PDCTL_RETURN_IF_ERROR(matrix(lw.wk, L.wk));
    PDCTL_RETURN_IF_ERROR(matrix(lw.wv, L.wv));
    PDCTL_RETURN_IF_ERROR(matrix(lw.wo, L.wo));
    PDCTL_RETURN_IF_ERROR(vector(lw.bq, L.bq));
    PDCTL_RETURN_IF_ERROR(vector(lw.bk, L.bk));
    PDCTL_RETURN_IF_ERROR(vector(lw.bv, L.bv));
    PDCTL_RETURN_IF_ERROR(vector(lw.q_norm, L.q_norm));
    PDCTL_RETURN_IF_ERROR(vector(lw.k_norm, L.k_norm));
    PDCTL_RETURN_IF_ERROR(vector(lw.ffn_norm, L.ffn_norm));
    PDCTL_RETURN_IF_ERROR(matrix(lw.w_gate, L.w_gate));
    PDCTL_RETURN_IF_ERROR(matrix(lw.w_up, L.w_up));
    PDCTL_RETURN_IF_ERROR(matrix(lw.w_down, L.w_down));
  }
  rope_.style = c.rope_style;
  rope_.theta = static_cast<float>(c.rope_theta);
  rope_.freq_factors = c.rope_freq_factors;
  return Status::ok();
}

Status LlamaModel::check(std::span<const SequenceInput> batch) const {
  const ModelConfig& c = model_.config;
  kv::KvPool* pool = backend_.kv_pool();
  if (!pool) return Status::internal("forward before the KV pool was created");
  const kv::KvGeometry& g = pool->geometry();
  if (g.num_layers != c.num_layers || g.num_kv_heads != c.num_kv_heads || g.head_dim != c.head_dim) {
    return Status::internal("the KV pool's geometry does not match the model");
  }
  if (batch.empty()) return Status::invalid_argument("an empty batch");
  for (size_t s = 0; s < batch.size(); ++s) {
    const SequenceInput& q = batch[s];
    if (q.tokens.empty()) return Status::invalid_argument(fmt::format("sequence {} has no new tokens", s));
    if (q.start_pos < 0) return Status::invalid_argument(fmt::format("sequence {}: start position {}", s, q.start_pos));
    const int64_t end = static_cast<int64_t>(q.start_pos) + static_cast<int64_t>(q.tokens.size());
    if (end > c.context_length) {
      return Status::out_of_range(fmt::format("sequence {}: {} tokens exceed the context length {}", s, end,
                                              c.context_length));
    }
    if (static_cast<int64_t>(q.page_table.size()) < pool->pages_for_tokens(end)) {
      return Status::invalid_argument(fmt::format("sequence {}: page table of {} pages for {} tokens", s,
                                                  q.page_table.size(), end));
    }
    for (int32_t t : q.tokens) {
      if (t < 0 || t >= c.vocab_size) {
        return Status::invalid_argument(fmt::format("sequence {}: token id {} is outside the vocabulary of {}", s, t,
                                                    c.vocab_size));
      }
    }
    for (int64_t p = 0; p < pool->pages_for_tokens(end); ++p) {
      const int32_t page = q.page_table[static_cast<size_t>(p)];
      if (pool->ref_count(page) <= 0) {
        return Status::invalid_argument(fmt::format("sequence {}: page {} is not an allocated page", s, page));
      }
    }
  }
  return Status::ok();
}

Status LlamaModel::forward(std::span<const SequenceInput> batch, ForwardOutput& out, const LayerObserver& observer) {
  PDCTL_RETURN_IF_ERROR(check(batch));
  const ModelConfig& c = model_.config;
  Backend& be = backend_;

  BatchLayout layout;
  tokens_.clear();
  rows_.clear();
  out.vocab_size = c.vocab_size;
  out.first_row.assign(batch.size(), 0);
  out.num_rows.assign(batch.size(), 0);
  for (size_t s = 0; s < batch.size(); ++s) {
    const SequenceInput& q = batch[s];
    BatchLayout::Seq seq;
    seq.start_pos = q.start_pos;
    seq.num_tokens = static_cast<int32_t>(q.tokens.size());
    seq.first_token = static_cast<int64_t>(tokens_.size());
    seq.pages = q.page_table;
    out.first_row[s] = static_cast<int64_t>(rows_.size());
    out.num_rows[s] = q.all_logits ? seq.num_tokens : 1;
    for (int32_t i = 0; i < seq.num_tokens; ++i) {
      tokens_.push_back(q.tokens[static_cast<size_t>(i)]);
      layout.positions.push_back(q.start_pos + i);
      if (q.all_logits || i + 1 == seq.num_tokens) rows_.push_back(static_cast<int32_t>(seq.first_token + i));
    }
    layout.seqs.push_back(seq);
  }
  const int64_t T = static_cast<int64_t>(tokens_.size());
  layout.num_tokens = T;

  be.begin_step();
  PDCTL_RETURN_IF_ERROR(be.set_batch(layout));
  const float eps = static_cast<float>(c.rms_norm_eps);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  Tensor x = be.scratch(T, c.hidden_size);
  Tensor xn = be.scratch(T, c.hidden_size);
  Tensor q = be.scratch(T, c.q_dim());
  Tensor k = be.scratch(T, c.kv_dim());
  Tensor v = be.scratch(T, c.kv_dim());
  Tensor attn = be.scratch(T, c.q_dim());
  Tensor o = be.scratch(T, c.hidden_size);
  Tensor gate = be.scratch(T, c.intermediate_size);
  Tensor up = be.scratch(T, c.intermediate_size);

  be.embedding(tok_embd_, tokens_, x);
  for (int l = 0; l < c.num_layers; ++l) {
    const Layer& L = layers_[static_cast<size_t>(l)];
    // Attention block.
    be.rms_norm(x, L.attn_norm, eps, xn);
    be.matmul(L.wq, xn, q);
    be.matmul(L.wk, xn, k);
    be.matmul(L.wv, xn, v);
    if (c.attention_bias) {
      be.add_bias(q, L.bq);
      be.add_bias(k, L.bk);
      be.add_bias(v, L.bv);
    }
    if (c.qk_norm) {
      be.rms_norm_heads(q, c.head_dim, L.q_norm, eps);
      be.rms_norm_heads(k, c.head_dim, L.k_norm, eps);
    }
    be.rope(q, c.head_dim, rope_);
    be.rope(k, c.head_dim, rope_);
    be.store_kv(l, k, v);
    if (observer) {
      PDCTL_RETURN_IF_ERROR(be.synchronize());  // the blocks must be in memory before anyone reads them
      observer(l);
    }
    be.attention(l, q, c.num_heads, scale, attn);
    be.matmul(L.wo, attn, o);
    be.add(x, o);
    // Feed-forward block.
    be.rms_norm(x, L.ffn_norm, eps, xn);
    be.matmul(L.w_gate, xn, gate);
    be.matmul(L.w_up, xn, up);
    be.swiglu(gate, up, gate);
    be.matmul(L.w_down, gate, o);
    be.add(x, o);
  }
  const int64_t R = static_cast<int64_t>(rows_.size());
  Tensor sel = be.scratch(R, c.hidden_size);
  be.get_rows(x, rows_, sel);
  be.rms_norm(sel, output_norm_, eps, sel);
  Tensor logits = be.scratch(R, c.vocab_size);
  be.matmul(output_, sel, logits);
  out.logits.resize(static_cast<size_t>(R * c.vocab_size));
  return be.read(logits, out.logits.data());
}

}  // namespace pdctl::engine

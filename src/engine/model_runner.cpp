#include "engine/model_runner.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace pdctl::engine {

Result<kv::KvDType> resolve_kv_dtype(const std::string& flag, DType weight_dtype) {
  if (flag == "auto") {
    switch (weight_dtype) {
      case DType::kF32: return kv::KvDType::kF32;
      case DType::kF16: return kv::KvDType::kF16;
      case DType::kBF16: return kv::KvDType::kBF16;
      case DType::kQ8_0: return kv::KvDType::kF16;
    }
  }
  PDCTL_ASSIGN_OR_RETURN(DType d, parse_dtype(flag));
  switch (d) {
    case DType::kF32: return kv::KvDType::kF32;
    case DType::kF16: return kv::KvDType::kF16;
    case DType::kBF16: return kv::KvDType::kBF16;
    case DType::kQ8_0: break;
  }
  return Status::invalid_argument(fmt::format("--kv-cache-dtype '{}' is not float32, float16 or bfloat16", flag));
}

Result<std::unique_ptr<ModelRunner>> ModelRunner::create(const EngineOptions& o, const kv::KvMemoryProvider& provider) {
  LoadOptions lo;
  lo.model_path = o.model_path;
  lo.load_format = o.load_format;
  lo.dtype = o.dtype;
  lo.seed = o.seed;
  PDCTL_ASSIGN_OR_RETURN(LoadedModel m, load_model(lo));
  return create(std::move(m), o, provider);
}

Result<std::unique_ptr<ModelRunner>> ModelRunner::create(LoadedModel m, const EngineOptions& o,
                                                         const kv::KvMemoryProvider& provider) {
  if (o.context_length) m.config.context_length = *o.context_length;
  std::unique_ptr<ModelRunner> r(new ModelRunner());
  PDCTL_ASSIGN_OR_RETURN(r->backend_, create_backend(o.device, o.threads));
  PDCTL_ASSIGN_OR_RETURN(kv::KvDType kvd, resolve_kv_dtype(o.kv_cache_dtype, m.config.weight_dtype));

  kv::KvGeometry g;
  g.num_layers = static_cast<int>(m.config.num_layers);
  g.num_kv_heads = static_cast<int>(m.config.num_kv_heads);
  g.head_dim = static_cast<int>(m.config.head_dim);
  g.page_size = o.page_size;
  g.dtype = kvd;
  kv::KvSizing s;
  s.max_total_tokens = o.max_total_tokens;
  s.mem_fraction_static = o.mem_fraction_static;
  s.physical_memory_bytes = kv::physical_memory_bytes();
  s.weight_bytes = m.weight_bytes();
  s.bytes_per_token = static_cast<int64_t>(g.bytes_per_token());
  s.context_length = m.config.context_length;
  s.max_running_requests = o.max_running_requests.value_or(kDefaultRequestsForKvSizing);
  s.page_size = o.page_size;
  PDCTL_ASSIGN_OR_RETURN(r->max_total_tokens_, kv::kv_pool_tokens(s));
  g.num_pages = static_cast<int>(r->max_total_tokens_ / o.page_size);
  PDCTL_RETURN_IF_ERROR(r->backend_->create_kv_pool(g, provider));
  spdlog::info("model {} ({}, {}, {} layers, {:.1f}M parameters, {:.1f} MB of weights); KV pool {} tokens in {} "
               "pages of {}, {}, {:.1f} MiB",
               m.source, arch_name(m.config.arch), dtype_name(m.config.weight_dtype), m.config.num_layers,
               static_cast<double>(m.config.num_parameters()) / 1e6, static_cast<double>(m.weight_bytes()) / 1e6,
               r->max_total_tokens_, g.num_pages, g.page_size, kv::kv_dtype_name(g.dtype),
               static_cast<double>(g.total_bytes()) / (1 << 20));
  PDCTL_ASSIGN_OR_RETURN(r->model_, LlamaModel::create(std::move(m), *r->backend_));
  return r;
}

}  // namespace pdctl::engine

#include "engine/dummy_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <new>
#include <sstream>

#include <sys/mman.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "engine/cpu/thread_pool.h"
#include "engine/model_loader.h"
#include "engine/model_writer.h"

namespace pdctl::engine {
namespace {

ModelConfig tiny() {
  ModelConfig c;
  c.arch = Arch::kLlama;
  c.hidden_size = 256;
  c.num_layers = 4;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 64;
  c.intermediate_size = 768;
  c.vocab_size = 512;
  c.context_length = 4096;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000;
  c.rope_style = RopeStyle::kHalves;
  c.tie_word_embeddings = true;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  c.weight_dtype = DType::kF32;
  return c;
}

ModelConfig llama_1b() {
  ModelConfig c;
  c.arch = Arch::kLlama;
  c.hidden_size = 2048;
  c.num_layers = 16;
  c.num_heads = 32;
  c.num_kv_heads = 8;
  c.head_dim = 64;
  c.intermediate_size = 8192;
  c.vocab_size = 128256;
  c.context_length = 131072;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 500000;
  c.rope_style = RopeStyle::kHalves;
  c.llama3_scaling = Llama3RopeScaling{32.0, 1.0, 4.0, 8192};
  c.rope_freq_factors = llama3_rope_freq_factors(64, 500000, *c.llama3_scaling);
  c.tie_word_embeddings = true;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  c.weight_dtype = DType::kF16;
  return c;
}

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Uniform in [-1, 1).
float uniform(uint64_t& s) {
  return static_cast<float>(static_cast<double>(splitmix64(s) >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

constexpr int64_t kChunk = int64_t{1} << 16;  // elements per independently seeded chunk

// Tensors of 2 MiB and more in 2 MiB-aligned anonymous memory marked MADV_HUGEPAGE (as the
// GGUF mapping, see common/mapped_file.cpp): decode streams every weight once per token, and
// with 4 KiB pages it reads them ~10% slower. Best effort: the kernel may decline.
std::shared_ptr<const void> alloc_bytes(int64_t n) {
  constexpr size_t kHuge = size_t{2} << 20;
  if (static_cast<size_t>(n) >= kHuge) {
    const size_t len = (static_cast<size_t>(n) + kHuge - 1) / kHuge * kHuge;
    void* r = ::mmap(nullptr, len + kHuge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r != MAP_FAILED) {
      const uintptr_t base = reinterpret_cast<uintptr_t>(r);
      const uintptr_t aligned = (base + kHuge - 1) & ~(kHuge - 1);
      if (aligned > base) ::munmap(r, aligned - base);
      if (base + kHuge > aligned) ::munmap(reinterpret_cast<void*>(aligned + len), base + kHuge - aligned);
      void* p = reinterpret_cast<void*>(aligned);
      ::madvise(p, len, MADV_HUGEPAGE);
      return std::shared_ptr<const void>(p, [len](const void* q) { ::munmap(const_cast<void*>(q), len); });
    }
  }
  void* p = ::operator new[](static_cast<size_t>(std::max<int64_t>(n, 1)), std::align_val_t(64));
  return std::shared_ptr<const void>(p, [](const void* q) { ::operator delete[](const_cast<void*>(q), std::align_val_t(64)); });
}

// Fills one tensor: value(i) = offset + scale * uniform, from a seed per chunk, then
// stored in `dtype` (kChunk is a multiple of 32, so Q8_0 blocks never straddle chunks).
void fill(void* dst, DType dtype, int64_t n, float offset, float scale, uint64_t seed, ThreadPool& pool) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  pool.parallel_for(chunks, [&](int64_t c0, int64_t c1, int) {
    std::vector<float> tmp(static_cast<size_t>(kChunk));
    for (int64_t c = c0; c < c1; ++c) {
      uint64_t s = seed ^ (static_cast<uint64_t>(c) * 0xd1342543de82ef95ull);
      splitmix64(s);
      const int64_t b = c * kChunk, e = std::min(n, b + kChunk);
      for (int64_t i = b; i < e; ++i) tmp[static_cast<size_t>(i - b)] = offset + scale * uniform(s);
      encode_row(dtype, tmp.data(), e - b, static_cast<uint8_t*>(dst) + dtype_bytes(dtype, b));
    }
  });
}

}  // namespace

std::vector<std::string> dummy_preset_names() { return {"tiny", "llama-1b"}; }

Result<ModelConfig> dummy_preset(const std::string& name) {
  if (name == "tiny") return tiny();
  if (name == "llama-1b") return llama_1b();
  return Status::not_found(fmt::format("'{}' is neither a directory with config.json nor a dummy preset ({})", name,
                                       fmt::join(dummy_preset_names(), ", ")));
}

Result<LoadedModel> make_random_model(const ModelConfig& c, DType dtype, uint64_t seed) {
  PDCTL_RETURN_IF_ERROR(c.validate("dummy model"));
  LoadedModel m;
  m.config = c;
  m.config.weight_dtype = dtype;
  m.format = "dummy";
  m.weights.layers.resize(static_cast<size_t>(c.num_layers));
  ThreadPool pool(c.num_parameters() > (int64_t{1} << 24) ? 0 : 1);
  uint64_t tensor_seed = seed * 0x9e3779b97f4a7c15ull + 12345;
  auto make = [&](WeightKind k, int layer) -> Status {
    const std::vector<int64_t> shape = expected_shape(c, k);
    uint64_t ts = splitmix64(tensor_seed);  // advance for every kind, present or not
    if (shape.empty()) return Status::ok();
    WeightRef& w = weight_slot(m.weights, k, layer);
    w.name = fmt::format("dummy: tensor '{}'", hf_tensor_name(k, layer));
    w.shape = shape;
    w.dtype = dtype;
    if (!is_matrix(k) && dtype == DType::kQ8_0) w.dtype = DType::kF32;
    if (dtype == DType::kQ8_0 && shape.back() % kQ8_0BlockElems != 0) {
      return Status::invalid_argument(fmt::format("{}: rows of {} elements cannot be Q8_0", w.name, shape.back()));
    }
    float offset = 0, scale = 0;
    switch (k) {
      case WeightKind::kTokEmbd: case WeightKind::kOutput: scale = 0.2f; break;
      case WeightKind::kOutputNorm: case WeightKind::kAttnNorm: case WeightKind::kFfnNorm:
      case WeightKind::kQNorm: case WeightKind::kKNorm:
        offset = 1.0f; scale = 0.1f; break;
      case WeightKind::kBq: case WeightKind::kBk: case WeightKind::kBv: scale = 0.5f; break;
      case WeightKind::kWq: case WeightKind::kWk: case WeightKind::kWv: case WeightKind::kWo:
      case WeightKind::kGate: case WeightKind::kUp: case WeightKind::kDown:
        scale = std::sqrt(3.0f / static_cast<float>(shape.back())); break;  // unit variance out
    }
    auto buf = alloc_bytes(w.bytes());
    fill(const_cast<void*>(buf.get()), w.dtype, w.elements(), offset, scale, ts, pool);
    w.data = buf.get();
    m.storage.push_back(std::move(buf));
    return Status::ok();
  };
  for (WeightKind k : kGlobalKinds) PDCTL_RETURN_IF_ERROR(make(k, 0));
  for (int l = 0; l < c.num_layers; ++l) {
    for (WeightKind k : kLayerKinds) PDCTL_RETURN_IF_ERROR(make(k, l));
  }
  if (c.tie_word_embeddings) m.weights.output = m.weights.tok_embd;
  return m;
}

Result<LoadedModel> make_dummy_model(const std::string& p, const std::string& dtype, uint64_t seed) {
  ModelConfig c;
  std::error_code ec;
  if (std::filesystem::is_directory(p, ec)) {
    const std::string cfg = (std::filesystem::path(p) / "config.json").string();
    std::ifstream in(cfg, std::ios::binary);
    if (!in) return Status::not_found(fmt::format("{}: cannot open (a dummy model needs its config.json)", cfg));
    std::stringstream ss;
    ss << in.rdbuf();
    nlohmann::json j = nlohmann::json::parse(ss.str(), nullptr, false);
    if (j.is_discarded()) return Status::corrupt(fmt::format("{}: not valid JSON", cfg));
    PDCTL_ASSIGN_OR_RETURN(c, config_from_hf(j, nullptr, cfg));
  } else {
    PDCTL_ASSIGN_OR_RETURN(c, dummy_preset(p));
  }
  DType d = c.weight_dtype;
  if (dtype != "auto") {
    PDCTL_ASSIGN_OR_RETURN(d, parse_dtype(dtype));
  }
  PDCTL_ASSIGN_OR_RETURN(LoadedModel m, make_random_model(c, d, seed));
  m.source = p;
  return m;
}

}  // namespace pdctl::engine

// stories260K (a real Llama checkpoint) against llama.cpp's greedy tokens, through both
// loaders, alone and batched, with and without chunked prefill.
#include <doctest/doctest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "engine_test_util.h"

using namespace pdctl::engine;
using namespace pdctl::engine::test;

namespace {

struct Golden {
  std::vector<std::vector<int32_t>> prompts, completions;
};

Golden read_golden() {
  std::ifstream in(shared_path("golden/stories260K_greedy.json"));
  nlohmann::json j = nlohmann::json::parse(in);
  Golden g;
  for (const auto& row : j) {
    g.prompts.push_back(row["prompt_tokens"].get<std::vector<int32_t>>());
    g.completions.push_back(row["completion_tokens"].get<std::vector<int32_t>>());
  }
  return g;
}

std::unique_ptr<ModelRunner> runner(const std::string& rel, int threads) {
  EngineOptions o;
  o.model_path = shared_path(rel);
  o.threads = threads;
  o.page_size = 16;
  o.max_total_tokens = 4096;
  auto r = ModelRunner::create(o);
  REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
  return std::move(r).value();
}

void check_all(ModelRunner& r, const Golden& g, const GenerateOptions& o) {
  auto outs = greedy(r, g.prompts, o);
  for (size_t i = 0; i < g.prompts.size(); ++i) {
    INFO("prompt " << i << ", chunk " << o.chunk << ", together " << o.together);
    CHECK(outs[i] == g.completions[i]);
  }
}

}  // namespace

TEST_CASE("golden: stories260K greedy tokens equal llama.cpp's, GGUF and HF, every batching") {
  if (!have_shared("golden/stories260K_greedy.json") || !have_shared("models/stories260K.gguf") ||
      !have_shared("models/stories260K-hf/model.safetensors")) {
    MESSAGE("skipped: stories260K model or golden file absent under " << PDCTL_SHARED_DIR);
    return;
  }
  const Golden g = read_golden();
  REQUIRE(g.prompts.size() == 6);
  for (const char* model : {"models/stories260K.gguf", "models/stories260K-hf"}) {
    for (int threads : {1, 2}) {
      auto r = runner(model, threads);
      CHECK(r->config().weight_dtype == DType::kF32);
      CHECK(r->kv_pool().geometry().dtype == pdctl::kv::KvDType::kF32);
      INFO(model << ", threads " << threads);
      GenerateOptions o;
      o.max_new_tokens = 64;
      o.together = true;
      check_all(*r, g, o);  // all six in one batch
      if (threads == 1) {  // the rest once: the thread count only splits the same work
        o.together = false;
        check_all(*r, g, o);  // each prompt alone, one-shot prefill
        o.together = true;
        for (int chunk : {1, 7, 64}) {  // chunked prefill; prompts finish at different steps,
          o.chunk = chunk;              // so prompt chunks and decode tokens share batches
          check_all(*r, g, o);
        }
      }
      CHECK(r->kv_pool().free_pages() == r->kv_pool().num_pages());
    }
  }
}

#include <doctest/doctest.h>

#include "engine/dummy_model.h"
#include "engine_test_util.h"

using namespace pdctl::engine;
using pdctl::kv::KvDType;

TEST_CASE("model runner: KV dtype follows the weights unless set") {
  CHECK(*resolve_kv_dtype("auto", DType::kF32) == KvDType::kF32);
  CHECK(*resolve_kv_dtype("auto", DType::kF16) == KvDType::kF16);
  CHECK(*resolve_kv_dtype("auto", DType::kBF16) == KvDType::kBF16);
  CHECK(*resolve_kv_dtype("auto", DType::kQ8_0) == KvDType::kF16);
  CHECK(*resolve_kv_dtype("bfloat16", DType::kF32) == KvDType::kBF16);
  CHECK_FALSE(resolve_kv_dtype("q8_0", DType::kF32).has_value());
}

TEST_CASE("model runner: a dummy preset; default pool size capped at context x requests") {
  EngineOptions o;
  o.model_path = "tiny";
  o.load_format = "dummy";
  o.threads = 1;
  auto r = ModelRunner::create(o);
  REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
  CHECK((*r)->config().context_length == 4096);
  CHECK((*r)->max_total_tokens() == 4096 * kDefaultRequestsForKvSizing);
  CHECK((*r)->kv_pool().geometry().dtype == KvDType::kF32);
  CHECK((*r)->kv_pool().page_size() == 16);

  o.max_running_requests = 2;
  o.page_size = 32;
  o.kv_cache_dtype = "float16";
  o.context_length = 1000;
  auto r2 = ModelRunner::create(o);
  REQUIRE(r2.has_value());
  CHECK((*r2)->max_total_tokens() == 1984);  // 2000 rounded down to whole pages of 32
  CHECK((*r2)->kv_pool().geometry().dtype == KvDType::kF16);

  // An F16 KV cache still generates (tokens may differ from F32 in principle; here the
  // first token of a short prompt agrees).
  test::GenerateOptions g;
  g.max_new_tokens = 4;
  auto a = test::greedy(**r, {{1, 10, 20, 30}}, g);
  auto b = test::greedy(**r2, {{1, 10, 20, 30}}, g);
  CHECK(a[0][0] == b[0][0]);

  o.device = "cuda";
  CHECK_FALSE(ModelRunner::create(o).has_value());
}

// Flags that CLI11 cannot check are refused before a run, naming the flag.
#include <doctest/doctest.h>

#include <cmath>

#include "roles/bench/bench_plan.h"

using namespace pdctl::roles;

TEST_CASE("a default plan: sglang on 127.0.0.1:30000, all at once, seed 1") {
  BenchOptions o;
  auto plan = make_serving_plan(o);
  REQUIRE(plan.has_value());
  CHECK(plan->backend == Backend::kSglang);
  CHECK(plan->url == "http://127.0.0.1:30000/generate");
  CHECK(std::isinf(plan->request_rate));
  CHECK(plan->seed == 1u);
  CHECK_FALSE(plan->goodput.any());
  CHECK(plan->run.dataset_name == "random");
}

TEST_CASE("--base-url wins over host and port") {
  BenchOptions o;
  o.backend = "openai-chat";
  o.base_url = "http://10.0.0.5:8000/";
  o.request_rate_text = "8";
  o.goodput = {"ttft:200", "tpot:50"};
  auto plan = make_serving_plan(o);
  REQUIRE(plan.has_value());
  CHECK(plan->url == "http://10.0.0.5:8000/v1/chat/completions");
  CHECK(plan->request_rate == 8.0);
  CHECK(plan->run.request_rate == 8.0);
  CHECK(plan->goodput.ttft_ms == 200.0);
  CHECK(plan->goodput.tpot_ms == 50.0);
}

TEST_CASE("bad flags are refused with the flag's name") {
  auto error_of = [](BenchOptions o) {
    auto plan = make_serving_plan(o);
    REQUIRE_FALSE(plan.has_value());
    return plan.status().message();
  };
  BenchOptions o;
  o.request_rate_text = "often";
  CHECK(error_of(o).find("--request-rate") != std::string::npos);
  o = {};
  o.goodput = {"latency:5"};
  CHECK(error_of(o).find("--goodput") != std::string::npos);
  o = {};
  o.seed = -3;
  CHECK(error_of(o).find("--seed") != std::string::npos);
  o = {};
  o.extra_request_body = "not json";
  CHECK(error_of(o).find("--extra-request-body") != std::string::npos);
  o = {};
  o.dataset_name = "sharegpt";
  CHECK(error_of(o).find("--dataset-path") != std::string::npos);
  o = {};
  o.tokenize_prompt = true;
  o.backend = "openai-chat";
  CHECK(error_of(o).find("--tokenize-prompt") != std::string::npos);
}

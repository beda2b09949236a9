#include "roles/bench/bench_plan.h"

#include "roles/bench/bench_schedule.h"

namespace pdctl::roles {

Result<ServingPlan> make_serving_plan(const BenchOptions& opts) {
  ServingPlan plan;
  PDCTL_ASSIGN_OR_RETURN(plan.backend, parse_backend(opts.backend));
  PDCTL_ASSIGN_OR_RETURN(plan.request_rate, parse_request_rate(opts.request_rate_text));
  PDCTL_ASSIGN_OR_RETURN(plan.goodput, parse_goodput(opts.goodput));
  PDCTL_ASSIGN_OR_RETURN(plan.body, request_body_options(opts));
  // numpy refuses seeds outside [0, 2^32); int covers only the lower half of that.
  if (opts.seed < 0) return Status::invalid_argument("--seed must not be negative");
  plan.seed = static_cast<uint32_t>(opts.seed);
  if (opts.dataset_name == "sharegpt" && opts.dataset_path.empty()) {
    return Status::invalid_argument(
        "--dataset-name sharegpt needs --dataset-path (a local ShareGPT JSON file)");
  }
  if (opts.tokenize_prompt) {
    if (opts.dataset_name != "random" && opts.dataset_name != "random-ids") {
      return Status::invalid_argument("--tokenize-prompt works only with the random datasets");
    }
    if (plan.backend == Backend::kOpenAIChat) {
      return Status::invalid_argument("--tokenize-prompt does not work with --backend openai-chat");
    }
  }
  plan.base_url = opts.base_url.empty()
                      ? "http://" + opts.host + ":" + std::to_string(opts.port)
                      : opts.base_url;
  while (!plan.base_url.empty() && plan.base_url.back() == '/') plan.base_url.pop_back();
  plan.url = plan.base_url + std::string(endpoint_path(plan.backend));
  plan.run = run_info(opts, plan.request_rate);
  return plan;
}

}  // namespace pdctl::roles

// `pdctl bench` (serving), in sglang.bench_serving's order: check the flags, learn from the
// server what the flags leave open (model name, tokenizer), build the dataset and the
// arrival times, build every request body, run the warmup and the timed run
// (bench_driver.h), fetch the server's info, then print the table and append the JSON line.
#include <algorithm>
#include <cstdio>
#include <map>

#include <spdlog/spdlog.h>

#include "roles/bench/bench_dataset.h"
#include "roles/bench/bench_driver.h"
#include "roles/bench/bench_engine_tokenizer.h"
#include "roles/bench/bench_plan.h"
#include "roles/bench/bench_schedule.h"
#include "roles/bench/bench_server_query.h"
#include "roles/bench/benches.h"
#include "roles/cli.h"

namespace pdctl::roles {
namespace {

constexpr auto kQueryTimeout = std::chrono::seconds(30);

// GET `path`; the body when the server answered 200, else why not.
Result<std::string> get_ok(const ServerTarget& to, std::string_view path) {
  PDCTL_ASSIGN_OR_RETURN(net::HttpResponse r, query_server(to, "GET", path, kQueryTimeout));
  if (r.status != 200) {
    return Status::unavailable("GET " + to.prefix + std::string(path) + ": HTTP " + std::to_string(r.status));
  }
  return std::move(r.body);
}

// sglang takes --model from /v1/models when it is not given; only the OpenAI backends
// send it, so only they need it.
Status resolve_model(const ServerTarget& to, ServingPlan& plan) {
  if (!plan.body.model.empty() || plan.backend == Backend::kSglang) return Status::ok();
  auto body = get_ok(to, "/v1/models");
  Result<std::string> id = body ? parse_first_model_id(*body) : Result<std::string>(body.status());
  if (!id) {
    return std::move(id).status().with_context("--model not given, and the server's model could not be "
                                               "fetched from /v1/models (pass --model NAME)");
  }
  spdlog::info("--model not given: using the server's model '{}' (from /v1/models)", *id);
  plan.body.model = std::move(id).value();
  return Status::ok();
}

// What the server says about its tokenizer, when the flags name none.
ServerTokenizerHints discover_tokenizer(const ServerTarget& to) {
  ServerTokenizerHints hints;
  spdlog::info("no --tokenizer, --model-path or --load-format dummy: asking the server which tokenizer "
               "it runs (/get_server_info, /get_model_info, /v1/models)");
  bool answered = false;
  for (std::string_view path : {"/get_server_info", "/get_model_info", "/v1/models"}) {
    auto r = query_server(to, "GET", path, kQueryTimeout);
    if (!r) {
      if (!answered) hints.unreachable = r.status().message();
      break;  // the server is down or hangs: asking it more would fail the same way
    }
    answered = true;
    hints.unreachable.clear();
    if (r->status != 200) continue;
    if (path == "/v1/models") {
      add_model_list_hints(r->body, hints);
    } else {
      add_tokenizer_hints(r->body, hints);
    }
  }
  return hints;
}

// Requests with their bodies; the rows' prompts are released as they are turned into bodies.
std::vector<PreparedRequest> prepare_requests(const RequestBodyOptions& body, std::vector<DatasetRow>& rows) {
  std::vector<PreparedRequest> out;
  out.reserve(rows.size());
  for (DatasetRow& row : rows) {
    out.push_back({build_request_body(body, row, row.output_len), row.prompt_len, row.output_len});
    row = DatasetRow{};
  }
  return out;
}

// The failed requests after the table: how many, and their distinct errors, most frequent
// first (sglang keeps the errors only in --output-details).
std::string format_failures(std::span<const RequestRecord> records, size_t failed) {
  if (failed == 0) return {};
  std::map<std::string, size_t> counts;
  for (const auto& r : records) {
    if (!r.finished || r.success) continue;
    std::string e = r.error.size() > 200 ? r.error.substr(0, 200) + "..." : r.error;
    for (char& c : e) {
      if (c == '\n' || c == '\r') c = ' ';
    }
    ++counts[e];
  }
  std::vector<std::pair<size_t, std::string>> sorted;
  for (auto& [e, n] : counts) sorted.emplace_back(n, e);
  std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::string out = fmt::format("{:<40} {:<10}\n", "Failed requests:", failed);
  constexpr size_t kShown = 5;
  for (size_t i = 0; i < sorted.size() && i < kShown; ++i) {
    out += fmt::format("  {} x {}\n", sorted[i].first, sorted[i].second);
  }
  if (sorted.size() > kShown) out += fmt::format("  ... and {} other errors\n", sorted.size() - kShown);
  return out;
}

int exit_code_for_signal(int sig) { return 128 + sig; }

}  // namespace

int run_serving_bench(const BenchOptions& opts) {
  auto plan = make_serving_plan(opts);
  if (!plan) {
    spdlog::error("{}", plan.status().message());
    return kUsageExitCode;
  }
  auto target = server_target(plan->base_url);
  if (!target) {
    spdlog::error("--base-url {}: {}", plan->base_url, target.status().message());
    return kUsageExitCode;
  }
  if (Status st = resolve_model(*target, *plan); !st) {
    spdlog::error("{}", st.message());
    return 1;
  }
  std::optional<ServerTokenizerHints> hints;
  if (!tokenizer_given(opts)) hints = discover_tokenizer(*target);
  auto tok = choose_tokenizer(opts, hints ? &*hints : nullptr);
  if (!tok) {
    spdlog::error("{}", tok.status().message());
    return 1;
  }
  spdlog::info("tokenizer: {}", tok->how);

  // The dataset first, then the arrival gaps: sglang's order of draws from the seed.
  BenchRng rng(plan->seed);
  auto rows = build_dataset(opts, plan->backend, *tok->tokenizer, rng);
  if (!rows) {
    spdlog::error("{}", rows.status().message());
    return 1;
  }
  std::vector<double> arrivals = arrival_offsets(rows->size(), plan->request_rate, rng.np);
  long long input_tokens = 0, output_tokens = 0;
  for (const auto& row : *rows) {
    input_tokens += row.prompt_len;
    output_tokens += row.output_len;
  }
  spdlog::info("{} requests to {}: #Input tokens: {}, #Output tokens: {}", rows->size(), plan->url,
               input_tokens, output_tokens);

  const DatasetRow& first = rows->front();
  const int warmup_len = warmup_output_len(first);
  PreparedRequest warmup{build_request_body(plan->body, first, warmup_len), first.prompt_len, warmup_len};
  std::vector<PreparedRequest> requests = prepare_requests(plan->body, *rows);
  rows->clear();

  DriverConfig cfg;
  cfg.target = *target;
  cfg.path = std::string(endpoint_path(plan->backend));
  cfg.backend = plan->backend;
  cfg.stream = plan->body.stream;
  cfg.max_concurrency = opts.max_concurrency;
  cfg.progress = ProgressDisplay::choose(opts.disable_tqdm, ProgressDisplay::stderr_is_terminal());
  DriverRun run = drive_requests(cfg, warmup, opts.warmup_requests, std::move(requests), std::move(arrivals));
  if (!run.warmup) {
    spdlog::error("{}", run.warmup.message());
    return run.interrupted ? exit_code_for_signal(run.signal) : 1;
  }

  RunInfo info = plan->run;
  if (plan->backend == Backend::kSglang && !run.interrupted) {
    // For the report only (sglang reads speculative decoding's accept length from it).
    auto body = get_ok(*target, "/get_server_info");
    if (body) {
      ServerInfo si = parse_server_info(*body);
      info.server_info_json = std::move(si.json);
      info.accept_length = si.accept_length;
    } else {
      spdlog::info("no server info for the report: {}", body.status().message());
    }
  }

  std::vector<RequestRecord> finished;
  std::span<const RequestRecord> records = run.records;
  if (run.interrupted) {
    for (auto& r : run.records) {
      if (r.finished) finished.push_back(std::move(r));
    }
    records = finished;
    spdlog::warn("interrupted by signal {} after {:.2f} s: {} of {} requests finished; the results so far follow",
                 run.signal, run.duration_s, run.finished, run.records.size());
  }
  BenchmarkSummary summary = summarize(records, run.duration_s, plan->goodput, tok->tokenizer.get());
  std::string out = format_result_table(info, summary);
  out += format_failures(records, static_cast<size_t>(summary.failed));
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);

  if (!opts.output_file.empty()) {
    if (run.interrupted) {
      spdlog::warn("interrupted run: nothing appended to {}", opts.output_file);
    } else if (Status st = append_jsonl(opts.output_file,
                                        format_jsonl_record(info, summary, records, opts.output_details));
               !st) {
      spdlog::error("{}", st.message());
      return 1;
    }
  }
  return run.interrupted ? exit_code_for_signal(run.signal) : 0;
}

}  // namespace pdctl::roles

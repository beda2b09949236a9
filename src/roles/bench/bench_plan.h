#pragma once
// The serving benchmark's flags checked and turned into what the request driver uses, so
// that a bad flag fails before any request is sent. Order of use in a run:
//   make_serving_plan → build_dataset (bench_dataset.h, with BenchRng{plan.seed})
//   → arrival_offsets + RequestDispatcher (bench_schedule.h)
//   → build_request_body (bench_request_body.h) → RequestRecord::begin
//   → on_stream_payload / on_full_response / finish_stream / fail_* (bench_stream.h)
//   → summarize (bench_metrics.h) → format_result_table / format_jsonl_record (bench_report.h)
#include <cstdint>
#include <string>

#include "common/status.h"
#include "roles/bench/bench_metrics.h"
#include "roles/bench/bench_options.h"
#include "roles/bench/bench_record.h"
#include "roles/bench/bench_report.h"
#include "roles/bench/bench_request_body.h"

namespace pdctl::roles {

struct ServingPlan {
  Backend backend = Backend::kSglang;
  std::string base_url;      // --base-url, or http://HOST:PORT; no trailing slash
  std::string url;           // base_url + the backend's endpoint
  double request_rate = 0;   // +infinity for inf
  uint32_t seed = 1;         // for BenchRng
  GoodputSlo goodput;        // empty without --goodput
  RequestBodyOptions body;
  RunInfo run;               // for the table and the JSON line
};

// Checks every serving flag that CLI11 cannot (rate, goodput, seed range, JSON body,
// flag combinations) and returns the plan; the error names the flag.
Result<ServingPlan> make_serving_plan(const BenchOptions& opts);

}  // namespace pdctl::roles

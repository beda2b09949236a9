#pragma once
// Entry points of the roles. Each returns the process exit code.
#include "roles/bench/bench_options.h"
#include "roles/router/router_options.h"
#include "roles/up/up_options.h"
#include "roles/worker/worker_options.h"

namespace pdctl::roles {

int run_worker(const WorkerOptions& opts);  // serve, prefill or decode (opts.role)
int run_router(const RouterOptions& opts);
int run_bench(const BenchOptions& opts);
int run_up(const UpOptions& opts);

}  // namespace pdctl::roles

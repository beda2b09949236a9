#pragma once
// The three benchmarks of `pdctl bench`; each returns the process exit code.
#include "roles/bench/bench_options.h"

namespace pdctl::roles {

int run_serving_bench(const BenchOptions& opts);      // online, as sglang.bench_serving
int run_offline_bench(const BenchOptions& opts);      // --offline, as sglang.bench_one_batch
int run_kv_transfer_bench(const BenchOptions& opts);  // --kv-transfer, as nixlbench

}  // namespace pdctl::roles

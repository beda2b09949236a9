#include "roles/bench/benches.h"
#include "roles/roles.h"

namespace pdctl::roles {

int run_bench(const BenchOptions& opts) {
  if (opts.offline) return run_offline_bench(opts);
  if (opts.kv_transfer) return run_kv_transfer_bench(opts);
  return run_serving_bench(opts);
}

}  // namespace pdctl::roles

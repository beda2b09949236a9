#pragma once
// Flags of `pdctl router`, named and defaulted as SGLang's router (sglang_router.launch_router).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/options.h"
#include "common/status.h"

namespace pdctl::roles {

struct PrefillEndpoint {
  std::string url;
  std::optional<int> bootstrap_port;  // nullopt: the worker's default (8998)
  bool operator==(const PrefillEndpoint&) const = default;
};

struct RouterOptions {
  std::string host = "127.0.0.1";
  int port = 30000;

  // Workers
  std::vector<std::string> worker_urls;            // regular mode
  bool pd_disaggregation = false;
  std::vector<std::string> prefill_args;           // raw "--prefill URL [PORT] ..." tokens
  std::vector<std::string> decode_urls;
  std::vector<PrefillEndpoint> prefill;            // parsed from prefill_args

  // Policies: random | round_robin | power_of_two | cache_aware
  std::string policy = "cache_aware";
  std::optional<std::string> prefill_policy;       // defaults to policy
  std::optional<std::string> decode_policy;        // defaults to policy
  double cache_threshold = 0.3;
  int balance_abs_threshold = 64;
  double balance_rel_threshold = 1.5;
  int eviction_interval_secs = 120;
  int64_t max_tree_size = int64_t{1} << 26;

  // Limits
  int64_t max_payload_size = 512ll << 20;
  int request_timeout_secs = 1800;
  int max_concurrent_requests = 256;
  int queue_size = 100;
  int queue_timeout_secs = 60;
  std::optional<std::string> api_key;

  // Retries
  int retry_max_retries = 5;
  int retry_initial_backoff_ms = 50;
  int retry_max_backoff_ms = 30000;
  double retry_backoff_multiplier = 1.5;
  double retry_jitter_factor = 0.2;
  bool disable_retries = false;

  // Circuit breaker
  int cb_failure_threshold = 10;
  int cb_success_threshold = 3;
  int cb_timeout_duration_secs = 60;
  int cb_window_duration_secs = 120;
  bool disable_circuit_breaker = false;

  // Health checks
  int health_failure_threshold = 3;
  int health_success_threshold = 2;
  int health_check_timeout_secs = 5;
  int health_check_interval_secs = 60;
  std::string health_check_endpoint = "/health";
  int worker_startup_timeout_secs = 600;
  int worker_startup_check_interval = 30;
};

void add_router_flags(OptionRegistry& reg, RouterOptions& opts);

// `--prefill URL [BOOTSTRAP_PORT] URL ...`: each URL may be followed by a port or "none".
Result<std::vector<PrefillEndpoint>> parse_prefill_endpoints(const std::vector<std::string>& args);

// Checks what flags alone cannot: the PD flags go together, policy names are known.
Status finalize_router_options(RouterOptions& opts);

}  // namespace pdctl::roles

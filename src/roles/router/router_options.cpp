#include "roles/router/router_options.h"

#include <charconv>

#include <fmt/format.h>

namespace pdctl::roles {
namespace {

const std::vector<std::string> kPolicies = {"random", "round_robin", "cache_aware", "power_of_two"};

std::optional<int> parse_port(const std::string& s) {
  int v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

bool looks_like_port(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

}  // namespace

void add_router_flags(OptionRegistry& reg, RouterOptions& o) {
  reg.add("--host", o.host, "Address to listen on");
  reg.add("--port", o.port, "HTTP port")->check(CLI::Range(1, 65535));

  const char* w = "Workers";
  reg.add_list("--worker-urls", o.worker_urls, "Colocated workers (regular mode)")->group(w);
  reg.add_flag("--pd-disaggregation", o.pd_disaggregation, "Prefill/decode disaggregated mode")->group(w);
  reg.add_list("--prefill", o.prefill_args,
               "Prefill worker URL and optional bootstrap port: --prefill URL [PORT|none] [URL [PORT]]...")
      ->expected(1, 1 << 20)->type_name("URL [BOOTSTRAP_PORT]")->group(w);
  reg.add_list("--decode", o.decode_urls, "Decode worker URL (repeatable)")
      ->expected(1, 1 << 20)->type_name("URL")->group(w);
  reg.add("--worker-startup-timeout-secs", o.worker_startup_timeout_secs, "Wait this long for workers at start")
      ->check(CLI::NonNegativeNumber)->group(w);
  reg.add("--worker-startup-check-interval", o.worker_startup_check_interval, "Seconds between start-up checks")
      ->check(CLI::PositiveNumber)->group(w);

  const char* p = "Routing policy";
  reg.add("--policy", o.policy, "random, round_robin, power_of_two or cache_aware")
      ->check(CLI::IsMember(kPolicies))->group(p);
  reg.add("--prefill-policy", o.prefill_policy, "Policy for prefill workers (default: --policy)")
      ->check(CLI::IsMember(kPolicies))->group(p);
  reg.add("--decode-policy", o.decode_policy, "Policy for decode workers (default: --policy)")
      ->check(CLI::IsMember(kPolicies))->group(p);
  reg.add("--cache-threshold", o.cache_threshold, "cache_aware: prefix match rate to route by cache (0-1)")
      ->check(CLI::Range(0.0, 1.0))->group(p);
  reg.add("--balance-abs-threshold", o.balance_abs_threshold,
          "cache_aware: balance load when max-min load exceeds this ...")
      ->check(CLI::NonNegativeNumber)->group(p);
  reg.add("--balance-rel-threshold", o.balance_rel_threshold, "... and max load exceeds min load times this")
      ->check(CLI::Range(1.0, 1e9))->group(p);
  reg.add("--eviction-interval-secs,--eviction-interval", o.eviction_interval_secs,
          "cache_aware: seconds between evictions of the approximate tree")
      ->check(CLI::PositiveNumber)->group(p);
  reg.add("--max-tree-size", o.max_tree_size, "cache_aware: characters per worker kept in the tree")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40))->group(p);

  const char* l = "Limits";
  reg.add("--max-payload-size", o.max_payload_size, "Largest request body in bytes")
      ->check(CLI::Range(int64_t{1024}, int64_t{1} << 40))->group(l);
  reg.add("--request-timeout-secs", o.request_timeout_secs, "Whole-request timeout")
      ->check(CLI::PositiveNumber)->group(l);
  reg.add("--max-concurrent-requests", o.max_concurrent_requests, "Requests in flight at most (-1: no limit)")
      ->check(CLI::Range(-1, 1 << 24))->group(l);
  reg.add("--queue-size", o.queue_size, "Requests waiting for a slot at most (429 above; 0: no queue)")
      ->check(CLI::Range(0, 1 << 24))->group(l);
  reg.add("--queue-timeout-secs", o.queue_timeout_secs, "Longest wait in the queue (then 408)")
      ->check(CLI::PositiveNumber)->group(l);
  reg.add("--api-key", o.api_key, "Require 'Authorization: Bearer KEY' on API and admin routes")->group(l);

  const char* r = "Retries";
  reg.add("--retry-max-retries", o.retry_max_retries, "Attempts of a request at most")
      ->check(CLI::Range(1, 1000))->group(r);
  reg.add("--retry-initial-backoff-ms", o.retry_initial_backoff_ms, "First backoff")
      ->check(CLI::NonNegativeNumber)->group(r);
  reg.add("--retry-max-backoff-ms", o.retry_max_backoff_ms, "Longest backoff")
      ->check(CLI::NonNegativeNumber)->group(r);
  reg.add("--retry-backoff-multiplier", o.retry_backoff_multiplier, "Backoff growth per attempt")
      ->check(CLI::Range(1.0, 100.0))->group(r);
  reg.add("--retry-jitter-factor", o.retry_jitter_factor, "Random part of each backoff (0-1)")
      ->check(CLI::Range(0.0, 1.0))->group(r);
  reg.add_flag("--disable-retries", o.disable_retries, "One attempt per request")->group(r);

  const char* c = "Circuit breaker";
  reg.add("--cb-failure-threshold", o.cb_failure_threshold, "Failures that open a worker's breaker")
      ->check(CLI::PositiveNumber)->group(c);
  reg.add("--cb-success-threshold", o.cb_success_threshold, "Successes in half-open that close it")
      ->check(CLI::PositiveNumber)->group(c);
  reg.add("--cb-timeout-duration-secs", o.cb_timeout_duration_secs, "Open time before a half-open trial")
      ->check(CLI::PositiveNumber)->group(c);
  reg.add("--cb-window-duration-secs", o.cb_window_duration_secs, "Window over which failures count")
      ->check(CLI::PositiveNumber)->group(c);
  reg.add_flag("--disable-circuit-breaker", o.disable_circuit_breaker, "No circuit breaker")->group(c);

  const char* h = "Health checks";
  reg.add("--health-failure-threshold", o.health_failure_threshold, "Failed checks that mark a worker unhealthy")
      ->check(CLI::PositiveNumber)->group(h);
  reg.add("--health-success-threshold", o.health_success_threshold, "Passed checks that mark it healthy again")
      ->check(CLI::PositiveNumber)->group(h);
  reg.add("--health-check-timeout-secs", o.health_check_timeout_secs, "Timeout of one check")
      ->check(CLI::PositiveNumber)->group(h);
  reg.add("--health-check-interval-secs", o.health_check_interval_secs, "Seconds between checks")
      ->check(CLI::PositiveNumber)->group(h);
  reg.add("--health-check-endpoint", o.health_check_endpoint, "Path of the check")->group(h);
}

Result<std::vector<PrefillEndpoint>> parse_prefill_endpoints(const std::vector<std::string>& args) {
  std::vector<PrefillEndpoint> out;
  for (const std::string& a : args) {
    if (a == "none" || a == "None" || looks_like_port(a)) {
      if (out.empty() || out.back().bootstrap_port.has_value()) {
        return Status::invalid_argument(fmt::format(
            "--prefill: '{}' must follow a URL (--prefill URL [BOOTSTRAP_PORT])", a));
      }
      if (a == "none" || a == "None") continue;
      auto port = parse_port(a);
      if (!port || *port < 1 || *port > 65535) {
        return Status::invalid_argument(fmt::format("--prefill: bootstrap port '{}' is not in 1-65535", a));
      }
      out.back().bootstrap_port = *port;
      continue;
    }
    if (a.rfind("http://", 0) != 0 && a.rfind("https://", 0) != 0) {
      return Status::invalid_argument(
          fmt::format("--prefill: '{}' is neither a URL (http://host:port) nor a bootstrap port", a));
    }
    out.push_back({a, std::nullopt});
  }
  return out;
}

Status finalize_router_options(RouterOptions& o) {
  PDCTL_ASSIGN_OR_RETURN(o.prefill, parse_prefill_endpoints(o.prefill_args));
  for (const auto& u : o.decode_urls) {
    if (u.rfind("http://", 0) != 0 && u.rfind("https://", 0) != 0) {
      return Status::invalid_argument(fmt::format("--decode: '{}' is not a URL (http://host:port)", u));
    }
  }
  if (!o.pd_disaggregation && (!o.prefill.empty() || !o.decode_urls.empty())) {
    return Status::invalid_argument("--prefill and --decode need --pd-disaggregation");
  }
  if (o.pd_disaggregation && !o.worker_urls.empty()) {
    return Status::invalid_argument("--worker-urls is for regular mode; with --pd-disaggregation use --prefill and --decode");
  }
  return Status::ok();
}

}  // namespace pdctl::roles

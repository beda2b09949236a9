#pragma once
// The router's view of its workers: identity (URL, type, bootstrap port), health, load and
// circuit breaker, and the registry that adds and removes them at run time. Semantics
// follow SGLang's sgl-router/src/core/worker.rs.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "roles/router/circuit_breaker.h"
#include "roles/router/router_common.h"

namespace pdctl::router {

enum class WorkerType { kRegular, kPrefill, kDecode };

// "regular", "prefill", "decode" (the names of POST /workers and GET /workers).
const char* worker_type_name(WorkerType t);
Result<WorkerType> parse_worker_type(std::string_view name);

struct WorkerSpec {
  std::string url;
  WorkerType type = WorkerType::kRegular;
  std::optional<int> bootstrap_port = std::nullopt;  // prefill only; nullopt: the worker's default (8998)
};

// "http://host:port[/]" -> "http://host:port": one spelling per worker, so that lookups by
// URL (DELETE /workers/{url}) find it. Refuses anything but http(s) with a host.
Result<std::string> normalize_worker_url(std::string_view url);

// The body of POST /workers: {"url": ..., "worker_type": "regular|prefill|decode",
// "bootstrap_port": int|null}. worker_type defaults to "regular".
Result<WorkerSpec> parse_worker_spec(const nlohmann::json& body);

// The host part of a worker URL, without brackets for IPv6 (SGLang's get_hostname in
// pd_types.rs, which also stops at the port; this one stops at a path too).
std::string url_host(std::string_view url);

// A worker's answer to GET /get_load: {"load": n} (older SGLang) or a list of per-DP-rank
// objects whose "num_tokens" are summed (newer SGLang); nullopt when neither.
std::optional<int64_t> parse_worker_load(const nlohmann::json& body);

struct HealthConfig {
  uint32_t failure_threshold = 3;  // consecutive failed checks: healthy -> unhealthy
  uint32_t success_threshold = 2;  // consecutive passed checks: unhealthy -> healthy
};

// Health from active checks, as SGLang's BasicWorker::check_health_async: counters of
// consecutive results; a threshold flips the state and resets its counter.
class HealthTracker {
 public:
  explicit HealthTracker(HealthConfig config, bool healthy = true)
      : config_(config), healthy_(healthy) {}

  // Records one check; returns true when the health state changed.
  bool record_check(bool passed);
  // Request-level evidence that the worker is down (see RouterCore::record_outcome).
  // Returns true when the health state changed.
  bool mark_unhealthy();
  // Evidence that a worker the router was waiting for is up: its first passed check
  // while the router starts (SGLang's wait_for_healthy_workers lets a worker in on one
  // passed check). Returns true when the health state changed.
  bool mark_healthy();

  bool healthy() const { return healthy_; }
  uint32_t consecutive_failures() const { return failures_; }
  uint32_t consecutive_successes() const { return successes_; }

 private:
  HealthConfig config_;
  bool healthy_;
  uint32_t failures_ = 0;
  uint32_t successes_ = 0;
};

class WorkerRegistry;

class Worker {
 public:
  Worker(WorkerSpec spec, HealthConfig health, CircuitBreakerConfig breaker, TimePoint now);
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  const std::string& url() const { return spec_.url; }
  WorkerType type() const { return spec_.type; }
  std::optional<int> bootstrap_port() const { return spec_.bootstrap_port; }
  const std::string& bootstrap_host() const { return bootstrap_host_; }

  HealthTracker& health() { return health_; }
  const HealthTracker& health() const { return health_; }
  bool healthy() const { return health_.healthy(); }
  CircuitBreaker& breaker() { return breaker_; }
  const CircuitBreaker& breaker() const { return breaker_; }

  // Healthy and the breaker lets a request through (SGLang's Worker::is_available).
  bool available(TimePoint now) { return healthy() && breaker_.can_execute(now); }

  // Requests the router has outstanding on this worker (held by LoadGuards).
  int64_t in_flight() const { return in_flight_; }
  // The last load the worker reported on GET /get_load; nullopt when unknown or stale.
  std::optional<int64_t> reported_load() const { return reported_load_; }
  void set_reported_load(std::optional<int64_t> load) { reported_load_ = load; }
  // power_of_two's load: the reported one when known, else in flight (SGLang's
  // PowerOfTwoPolicy::get_worker_load).
  int64_t effective_load() const { return reported_load_.value_or(in_flight_); }

  // Requests routed here by a policy (sgl_router_processed_requests_total).
  uint64_t processed() const { return processed_; }
  void count_processed() { ++processed_; }

  // False once removed from the registry; a request that still holds the worker may
  // finish, but its outcome no longer matters to routing.
  bool registered() const { return registered_; }

  // One entry of GET /workers; keys are sorted, so the text is stable.
  nlohmann::json to_json() const;

 private:
  friend class LoadGuard;
  friend class WorkerRegistry;

  WorkerSpec spec_;
  std::string bootstrap_host_;
  HealthTracker health_;
  CircuitBreaker breaker_;
  int64_t in_flight_ = 0;
  std::optional<int64_t> reported_load_;
  uint64_t processed_ = 0;
  bool registered_ = true;
};

// Counts one request in flight on a worker for as long as it lives (SGLang's
// WorkerLoadGuard). Move-only; keeps the worker alive if it is removed meanwhile.
class LoadGuard {
 public:
  LoadGuard() = default;
  explicit LoadGuard(std::shared_ptr<Worker> worker);
  ~LoadGuard() { release(); }
  LoadGuard(LoadGuard&& other) noexcept = default;
  LoadGuard& operator=(LoadGuard&& other) noexcept;
  LoadGuard(const LoadGuard&) = delete;
  LoadGuard& operator=(const LoadGuard&) = delete;

  // Ends the count early (idempotent).
  void release();
  const std::shared_ptr<Worker>& worker() const { return worker_; }

 private:
  std::shared_ptr<Worker> worker_;
};

class WorkerRegistry {
 public:
  WorkerRegistry(HealthConfig health, CircuitBreakerConfig breaker)
      : health_(health), breaker_(breaker) {}

  // Errors: invalid_argument (URL, port), already_exists (same URL).
  Result<std::shared_ptr<Worker>> add(WorkerSpec spec, TimePoint now);
  // Errors: not_found. The URL is normalized first.
  Result<std::shared_ptr<Worker>> remove(std::string_view url);
  std::shared_ptr<Worker> find(std::string_view url) const;

  // In the order they were added (policies rely on a stable order).
  const std::vector<std::shared_ptr<Worker>>& all() const { return workers_; }
  std::vector<std::shared_ptr<Worker>> of_type(WorkerType type) const;
  size_t size() const { return workers_.size(); }

  // GET /workers: {"workers": [...], "total": n, "stats": {total_workers, healthy_workers,
  // total_load, by_type: {regular, prefill, decode}}} (SGLang's WorkerListResponse).
  nlohmann::json to_json() const;
  // GET /get_loads: {"loads": [{"worker", "worker_type", "load", "in_flight"}],
  // "total_workers", "successful", "failed"} (SGLang's WorkerLoadsResult; "load" is the
  // reported load, -1 when the last fetch failed; "in_flight" is pdctl's addition).
  nlohmann::json loads_json() const;

 private:
  HealthConfig health_;
  CircuitBreakerConfig breaker_;
  std::vector<std::shared_ptr<Worker>> workers_;
};

}  // namespace pdctl::router

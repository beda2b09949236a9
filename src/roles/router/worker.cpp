#include "roles/router/worker.h"

#include <algorithm>

#include <fmt/format.h>

namespace pdctl::router {

const char* worker_type_name(WorkerType t) {
  switch (t) {
    case WorkerType::kRegular: return "regular";
    case WorkerType::kPrefill: return "prefill";
    case WorkerType::kDecode: return "decode";
  }
  return "unknown";
}

Result<WorkerType> parse_worker_type(std::string_view name) {
  if (name == "regular") return WorkerType::kRegular;
  if (name == "prefill") return WorkerType::kPrefill;
  if (name == "decode") return WorkerType::kDecode;
  return Status::invalid_argument(
      fmt::format("worker_type '{}' is not one of regular, prefill, decode", name));
}

Result<std::string> normalize_worker_url(std::string_view url) {
  std::string_view rest;
  if (url.starts_with("http://")) {
    rest = url.substr(7);
  } else if (url.starts_with("https://")) {
    rest = url.substr(8);
  } else {
    return Status::invalid_argument(fmt::format("worker URL '{}' is not http(s)://host[:port]", url));
  }
  if (rest.empty() || rest.front() == '/' || rest.front() == ':') {
    return Status::invalid_argument(fmt::format("worker URL '{}' has no host", url));
  }
  if (url.find_first_of(" \t\r\n") != std::string_view::npos) {
    return Status::invalid_argument(fmt::format("worker URL '{}' contains white space", url));
  }
  while (url.ends_with('/')) url.remove_suffix(1);
  return std::string(url);
}

Result<WorkerSpec> parse_worker_spec(const nlohmann::json& body) {
  if (!body.is_object()) return Status::invalid_argument("the body must be a JSON object");
  auto url = body.find("url");
  if (url == body.end() || !url->is_string()) {
    return Status::invalid_argument("'url' (a string) is required");
  }
  WorkerSpec spec;
  PDCTL_ASSIGN_OR_RETURN(spec.url, normalize_worker_url(url->get<std::string>()));
  if (auto t = body.find("worker_type"); t != body.end() && !t->is_null()) {
    if (!t->is_string()) return Status::invalid_argument("'worker_type' must be a string");
    PDCTL_ASSIGN_OR_RETURN(spec.type, parse_worker_type(t->get<std::string>()));
  }
  if (auto p = body.find("bootstrap_port"); p != body.end() && !p->is_null()) {
    if (!p->is_number_integer()) {
      return Status::invalid_argument("'bootstrap_port' must be an integer or null");
    }
    int64_t port = p->get<int64_t>();
    if (port < 1 || port > 65535) {
      return Status::out_of_range(fmt::format("'bootstrap_port' {} is not in 1-65535", port));
    }
    if (spec.type != WorkerType::kPrefill) {
      return Status::invalid_argument("'bootstrap_port' is only for prefill workers");
    }
    spec.bootstrap_port = static_cast<int>(port);
  }
  return spec;
}

std::string url_host(std::string_view url) {
  if (url.starts_with("http://")) {
    url.remove_prefix(7);
  } else if (url.starts_with("https://")) {
    url.remove_prefix(8);
  }
  if (url.starts_with('[')) {
    size_t end = url.find(']');
    return std::string(url.substr(1, end == std::string_view::npos ? url.size() - 1 : end - 1));
  }
  size_t end = url.find_first_of(":/?#");
  return std::string(url.substr(0, end));
}

std::optional<int64_t> parse_worker_load(const nlohmann::json& body) {
  if (body.is_number_integer()) return body.get<int64_t>();
  if (body.is_object()) {
    auto it = body.find("load");
    if (it != body.end() && it->is_number_integer()) return it->get<int64_t>();
    return std::nullopt;
  }
  if (body.is_array()) {
    int64_t total = 0;
    bool any = false;
    for (const auto& rank : body) {
      if (!rank.is_object()) continue;
      auto it = rank.find("num_tokens");
      if (it != rank.end() && it->is_number_integer()) {
        total += it->get<int64_t>();
        any = true;
      }
    }
    if (any) return total;
  }
  return std::nullopt;
}

bool HealthTracker::record_check(bool passed) {
  if (passed) {
    failures_ = 0;
    ++successes_;
    if (!healthy_ && successes_ >= config_.success_threshold) {
      healthy_ = true;
      successes_ = 0;
      return true;
    }
    return false;
  }
  successes_ = 0;
  ++failures_;
  if (healthy_ && failures_ >= config_.failure_threshold) {
    healthy_ = false;
    failures_ = 0;
    return true;
  }
  return false;
}

bool HealthTracker::mark_unhealthy() {
  successes_ = 0;
  failures_ = 0;
  if (!healthy_) return false;
  healthy_ = false;
  return true;
}

bool HealthTracker::mark_healthy() {
  successes_ = 0;
  failures_ = 0;
  if (healthy_) return false;
  healthy_ = true;
  return true;
}

Worker::Worker(WorkerSpec spec, HealthConfig health, CircuitBreakerConfig breaker, TimePoint now)
    : spec_(std::move(spec)),
      bootstrap_host_(url_host(spec_.url)),
      health_(health),
      breaker_(breaker, now) {}

nlohmann::json Worker::to_json() const {
  nlohmann::json j = {
      {"id", spec_.url},
      {"url", spec_.url},
      {"worker_type", worker_type_name(spec_.type)},
      {"is_healthy", healthy()},
      {"load", in_flight_},
      {"connection_mode", "Http"},
      {"processed_requests", processed_},
      {"reported_load", reported_load_ ? nlohmann::json(*reported_load_) : nlohmann::json(nullptr)},
      {"circuit_breaker",
       {{"state", circuit_state_name(breaker_.current())},
        {"consecutive_failures", breaker_.consecutive_failures()},
        {"consecutive_successes", breaker_.consecutive_successes()},
        {"total_failures", breaker_.total_failures()},
        {"total_successes", breaker_.total_successes()}}},
  };
  if (spec_.type == WorkerType::kPrefill) {
    j["bootstrap_port"] =
        spec_.bootstrap_port ? nlohmann::json(*spec_.bootstrap_port) : nlohmann::json(nullptr);
  }
  return j;
}

LoadGuard::LoadGuard(std::shared_ptr<Worker> worker) : worker_(std::move(worker)) {
  if (worker_) ++worker_->in_flight_;
}

LoadGuard& LoadGuard::operator=(LoadGuard&& other) noexcept {
  if (this != &other) {
    release();
    worker_ = std::move(other.worker_);
  }
  return *this;
}

void LoadGuard::release() {
  if (!worker_) return;
  // Saturating, as SGLang's decrement_load.
  if (worker_->in_flight_ > 0) --worker_->in_flight_;
  worker_.reset();
}

Result<std::shared_ptr<Worker>> WorkerRegistry::add(WorkerSpec spec, TimePoint now) {
  PDCTL_ASSIGN_OR_RETURN(spec.url, normalize_worker_url(spec.url));
  if (spec.bootstrap_port && (*spec.bootstrap_port < 1 || *spec.bootstrap_port > 65535)) {
    return Status::out_of_range(fmt::format("bootstrap port {} is not in 1-65535", *spec.bootstrap_port));
  }
  if (spec.bootstrap_port && spec.type != WorkerType::kPrefill) {
    return Status::invalid_argument("a bootstrap port is only for prefill workers");
  }
  if (find(spec.url)) return Status::already_exists(fmt::format("worker {} already exists", spec.url));
  auto w = std::make_shared<Worker>(std::move(spec), health_, breaker_, now);
  workers_.push_back(w);
  return w;
}

Result<std::shared_ptr<Worker>> WorkerRegistry::remove(std::string_view url) {
  auto norm = normalize_worker_url(url);
  std::string_view key = norm ? std::string_view(*norm) : url;
  auto it = std::find_if(workers_.begin(), workers_.end(),
                         [&](const auto& w) { return w->url() == key; });
  if (it == workers_.end()) return Status::not_found(fmt::format("worker {} not found", url));
  std::shared_ptr<Worker> w = *it;
  workers_.erase(it);
  w->registered_ = false;
  return w;
}

std::shared_ptr<Worker> WorkerRegistry::find(std::string_view url) const {
  auto norm = normalize_worker_url(url);
  std::string_view key = norm ? std::string_view(*norm) : url;
  for (const auto& w : workers_) {
    if (w->url() == key) return w;
  }
  return nullptr;
}

std::vector<std::shared_ptr<Worker>> WorkerRegistry::of_type(WorkerType type) const {
  std::vector<std::shared_ptr<Worker>> out;
  for (const auto& w : workers_) {
    if (w->type() == type) out.push_back(w);
  }
  return out;
}

nlohmann::json WorkerRegistry::to_json() const {
  nlohmann::json list = nlohmann::json::array();
  size_t healthy = 0, regular = 0, prefill = 0, decode = 0;
  int64_t load = 0;
  for (const auto& w : workers_) {
    list.push_back(w->to_json());
    healthy += w->healthy() ? 1 : 0;
    load += w->in_flight();
    switch (w->type()) {
      case WorkerType::kRegular: ++regular; break;
      case WorkerType::kPrefill: ++prefill; break;
      case WorkerType::kDecode: ++decode; break;
    }
  }
  return {{"workers", std::move(list)},
          {"total", workers_.size()},
          {"stats",
           {{"total_workers", workers_.size()},
            {"healthy_workers", healthy},
            {"total_load", load},
            {"by_type", {{"regular", regular}, {"prefill", prefill}, {"decode", decode}}}}}};
}

nlohmann::json WorkerRegistry::loads_json() const {
  nlohmann::json loads = nlohmann::json::array();
  size_t ok = 0;
  for (const auto& w : workers_) {
    ok += w->reported_load() ? 1 : 0;
    loads.push_back({{"worker", w->url()},
                     {"worker_type", worker_type_name(w->type())},
                     {"load", w->reported_load().value_or(-1)},
                     {"in_flight", w->in_flight()}});
  }
  return {{"loads", std::move(loads)},
          {"total_workers", workers_.size()},
          {"successful", ok},
          {"failed", workers_.size() - ok}};
}

}  // namespace pdctl::router

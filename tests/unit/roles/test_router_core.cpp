// The router core: worker registry and its JSON, pair selection with load accounting,
// outcomes feeding breakers and health, metrics text.
#include <doctest/doctest.h>

#include <string>

#include "roles/router/cache_aware_policy.h"
#include "roles/router/router_core.h"

using namespace pdctl::router;
using namespace std::chrono_literals;
using nlohmann::json;
using pdctl::Errc;

namespace {

const TimePoint t0 = TimePoint{} + 1000h;

pdctl::roles::RouterOptions pd_options() {
  pdctl::roles::RouterOptions o;
  o.pd_disaggregation = true;
  o.prefill = {{"http://p0:30001", 8998}, {"http://p1:30002", std::nullopt}};
  o.decode_urls = {"http://d0:31001/"};
  return o;
}

std::unique_ptr<RouterCore> pd_core(RouterCoreConfig cfg = core_config_from_options(pd_options())) {
  auto core = RouterCore::create(cfg, 42, t0);
  REQUIRE(core);
  REQUIRE((*core)->add_configured_workers(pd_options(), t0));
  return std::move(*core);
}

bool contains(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

}  // namespace

TEST_CASE("core: flags become the core's configuration") {
  pdctl::roles::RouterOptions o;
  RouterCoreConfig c = core_config_from_options(o);
  CHECK_FALSE(c.pd_mode);
  CHECK(c.policy == "cache_aware");
  CHECK(c.prefill_policy == "cache_aware");
  CHECK(c.cache.cache_threshold == doctest::Approx(0.3));
  CHECK(c.cache.balance_abs_threshold == 64);
  CHECK(c.cache.eviction_interval == 120s);
  CHECK(c.cache.max_tree_size == (size_t{1} << 26));
  CHECK(c.breaker.enabled);
  CHECK(c.breaker.failure_threshold == 10);
  CHECK(c.breaker.timeout == 60s);
  CHECK(c.retry.max_retries == 5);
  CHECK(c.admission.max_concurrent == 256);
  CHECK(c.admission.queue_timeout == 60s);
  CHECK(c.health.failure_threshold == 3);

  o.policy = "power_of_two";
  o.decode_policy = "round_robin";
  o.disable_circuit_breaker = true;
  o.disable_retries = true;
  c = core_config_from_options(o);
  CHECK(c.prefill_policy == "power_of_two");
  CHECK(c.decode_policy == "round_robin");
  CHECK_FALSE(c.breaker.enabled);
  CHECK(c.retry.disabled);
}

TEST_CASE("core: unknown policies are refused at creation") {
  RouterCoreConfig c;
  c.policy = "fastest";
  CHECK(RouterCore::create(c, 1, t0).status().code() == Errc::kInvalidArgument);
}

TEST_CASE("core: workers are added, listed, refused and removed") {
  auto core = pd_core();
  CHECK(core->workers().size() == 3);
  REQUIRE(core->find_worker("http://d0:31001"));  // the trailing slash was dropped
  CHECK(core->find_worker("http://d0:31001/") == core->find_worker("http://d0:31001"));

  // The mode decides which types fit; URLs are unique.
  CHECK(core->add_worker({"http://r:1", WorkerType::kRegular}, t0).status().code() == Errc::kInvalidArgument);
  CHECK(core->add_worker({"http://p0:30001/", WorkerType::kPrefill}, t0).status().code() == Errc::kAlreadyExists);
  CHECK(core->add_worker({"ftp://x", WorkerType::kDecode}, t0).status().code() == Errc::kInvalidArgument);
  CHECK(core->add_worker({"http://d1:1", WorkerType::kDecode, 9000}, t0).status().code() == Errc::kInvalidArgument);
  auto spec = parse_worker_spec(json{{"url", "http://d1:31002"}, {"worker_type", "decode"}});
  REQUIRE(spec);
  REQUIRE(core->add_worker(*spec, t0));

  json list = core->workers_json(t0);
  CHECK(list["total"] == 4);
  CHECK(list["stats"]["by_type"] == json{{"regular", 0}, {"prefill", 2}, {"decode", 2}});
  CHECK(list["stats"]["healthy_workers"] == 4);
  const json& p0 = list["workers"][0];
  CHECK(p0["url"] == "http://p0:30001");
  CHECK(p0["id"] == "http://p0:30001");
  CHECK(p0["worker_type"] == "prefill");
  CHECK(p0["bootstrap_port"] == 8998);
  CHECK(p0["is_healthy"] == true);
  CHECK(p0["load"] == 0);
  CHECK(p0["circuit_breaker"]["state"] == "closed");
  CHECK(list["workers"][1]["bootstrap_port"].is_null());
  CHECK_FALSE(list["workers"][2].contains("bootstrap_port"));  // decode
  // Stable text: the same state renders the same bytes.
  CHECK(core->workers_json(t0).dump() == list.dump());

  REQUIRE(core->remove_worker("http://d1:31002/"));
  CHECK(core->remove_worker("http://d1:31002").code() == Errc::kNotFound);
  CHECK(core->workers().size() == 3);
}

TEST_CASE("core: POST /workers bodies") {
  auto s = parse_worker_spec(json{{"url", "http://p:1"}, {"worker_type", "prefill"}, {"bootstrap_port", 8999}});
  REQUIRE(s);
  CHECK(s->type == WorkerType::kPrefill);
  CHECK(s->bootstrap_port == 8999);
  s = parse_worker_spec(json{{"url", "http://p:1"}, {"worker_type", "prefill"}, {"bootstrap_port", nullptr}});
  REQUIRE(s);
  CHECK_FALSE(s->bootstrap_port);
  s = parse_worker_spec(json{{"url", "http://w:1"}});
  REQUIRE(s);
  CHECK(s->type == WorkerType::kRegular);
  CHECK(parse_worker_spec(json{{"url", 5}}).status().code() == Errc::kInvalidArgument);
  CHECK(parse_worker_spec(json{{"url", "http://w:1"}, {"worker_type", "mixed"}}).status().code() ==
        Errc::kInvalidArgument);
  CHECK(parse_worker_spec(json{{"url", "http://p:1"}, {"worker_type", "prefill"}, {"bootstrap_port", 70000}})
            .status()
            .code() == Errc::kOutOfRange);
  CHECK(parse_worker_spec(json::array()).status().code() == Errc::kInvalidArgument);
}

TEST_CASE("core: /get_load answers and GET /get_loads") {
  CHECK(parse_worker_load(json{{"load", 7}}) == 7);
  CHECK(parse_worker_load(json::array({json{{"dp_rank", 0}, {"num_tokens", 100}},
                                       json{{"dp_rank", 1}, {"num_tokens", 23}}})) == 123);
  CHECK_FALSE(parse_worker_load(json{{"status", "ok"}}));
  auto core = pd_core();
  core->set_reported_load(*core->find_worker("http://p0:30001"), 5);
  json loads = core->loads_json();
  CHECK(loads["total_workers"] == 3);
  CHECK(loads["successful"] == 1);
  CHECK(loads["failed"] == 2);
  CHECK(loads["loads"][0] == json{{"worker", "http://p0:30001"}, {"worker_type", "prefill"}, {"load", 5}, {"in_flight", 0}});
  CHECK(loads["loads"][1]["load"] == -1);
}

TEST_CASE("core: pick_pair picks one of each type and counts both in flight until dropped") {
  RouterCoreConfig cfg = core_config_from_options(pd_options());
  cfg.prefill_policy = "round_robin";
  cfg.decode_policy = "round_robin";
  auto core = pd_core(cfg);
  auto p0 = core->find_worker("http://p0:30001");
  auto d0 = core->find_worker("http://d0:31001");
  {
    auto pair = core->pick_pair("", t0);
    REQUIRE(pair);
    CHECK(pair->prefill.worker == p0);
    CHECK(pair->decode.worker == d0);
    CHECK(p0->in_flight() == 1);
    CHECK(d0->in_flight() == 1);
    auto second = core->pick_pair("", t0);
    CHECK(second->prefill.worker->url() == "http://p1:30002");
    CHECK(d0->in_flight() == 2);
    CHECK(core->workers_json(t0)["stats"]["total_load"] == 4);
  }
  CHECK(p0->in_flight() == 0);
  CHECK(d0->in_flight() == 0);
  CHECK(p0->processed() == 1);
  CHECK(d0->processed() == 2);
  CHECK_FALSE(core->needs_request_text());
  CHECK(core->pick_worker("", t0).status().code() == Errc::kInternal);  // PD mode
}

TEST_CASE("core: no workers, or none available, is 503 with SGLang's messages") {
  RouterCoreConfig cfg = core_config_from_options(pd_options());
  auto core = RouterCore::create(cfg, 1, t0).value();
  auto none = core->pick_pair("", t0);
  CHECK(none.status().code() == Errc::kUnavailable);
  CHECK(contains(none.status().message(), "No prefill workers available"));

  REQUIRE(core->add_worker({"http://p:1", WorkerType::kPrefill}, t0));
  REQUIRE(core->add_worker({"http://d:1", WorkerType::kDecode}, t0));
  auto d = core->find_worker("http://d:1");
  core->record_outcome(*d, AttemptResult::transport_error(TransportError::kRefused), t0);
  auto down = core->pick_pair("", t0);
  CHECK(down.status().code() == Errc::kUnavailable);
  CHECK(contains(down.status().message(), "No available decode workers (all circuits open or unhealthy)"));
  CHECK(core->find_worker("http://p:1")->in_flight() == 0);  // the prefill pick was undone
}

TEST_CASE("core: outcomes open the breaker; after the timeout a half-open trial closes it") {
  RouterCoreConfig cfg = core_config_from_options(pd_options());
  cfg.breaker.failure_threshold = 2;
  cfg.breaker.success_threshold = 1;
  cfg.breaker.timeout = 30s;
  cfg.prefill_policy = "round_robin";
  auto core = pd_core(cfg);
  auto p0 = core->find_worker("http://p0:30001");
  core->record_outcome(*p0, AttemptResult::http(502), t0);
  core->record_outcome(*p0, AttemptResult::http(429), t0);  // a 4xx is a success: resets
  core->record_outcome(*p0, AttemptResult::http(500), t0);
  CHECK(p0->breaker().current() == CircuitState::kClosed);
  core->record_outcome(*p0, AttemptResult::transport_error(TransportError::kReset), t0 + 1s);
  CHECK(p0->breaker().current() == CircuitState::kOpen);
  CHECK(p0->healthy());  // a reset is not a refusal: health is untouched
  for (int i = 0; i < 4; ++i) CHECK(core->pick_pair("", t0 + 2s)->prefill.worker->url() == "http://p1:30002");

  std::string m = core->metrics_text(t0 + 2s);
  CHECK(contains(m, "sgl_router_cb_state{worker=\"http://p0:30001\"} 1"));
  CHECK(contains(m, "sgl_router_cb_state_transitions_total{from=\"closed\",to=\"open\",worker=\"http://p0:30001\"} 1"));
  CHECK(contains(m, "sgl_router_cb_outcomes_total{outcome=\"failure\",worker=\"http://p0:30001\"} 3"));

  // 30 s after opening: half-open, p0 is a candidate again; one success closes it.
  bool seen = false;
  for (int i = 0; i < 2; ++i) seen = seen || core->pick_pair("", t0 + 31s)->prefill.worker == p0;
  CHECK(seen);
  CHECK(p0->breaker().current() == CircuitState::kHalfOpen);
  core->record_outcome(*p0, AttemptResult::http(200), t0 + 32s);
  CHECK(p0->breaker().current() == CircuitState::kClosed);
  m = core->metrics_text(t0 + 32s);
  CHECK(contains(m, "sgl_router_cb_state{worker=\"http://p0:30001\"} 0"));
  CHECK(contains(m, "to=\"half_open\",worker=\"http://p0:30001\"} 1"));
}

TEST_CASE("core: SGLang's pair rule feeds both breakers the final status") {
  RouterCoreConfig cfg = core_config_from_options(pd_options());
  cfg.breaker.failure_threshold = 1;
  auto core = pd_core(cfg);
  auto pair = core->pick_pair("x", t0).value();
  core->record_pair_outcome(pair, AttemptResult::transport_error(TransportError::kRefused), t0);
  CHECK(pair.prefill.worker->breaker().current() == CircuitState::kOpen);
  CHECK(pair.decode.worker->breaker().current() == CircuitState::kOpen);
  CHECK(pair.prefill.worker->healthy());  // the pair's result does not say who refused
}

TEST_CASE("core: a refused connection marks the worker down until health checks pass") {
  auto core = pd_core();
  auto d0 = core->find_worker("http://d0:31001");
  core->record_outcome(*d0, AttemptResult::transport_error(TransportError::kRefused), t0);
  CHECK_FALSE(d0->healthy());
  CHECK(core->pick_pair("", t0).status().code() == Errc::kUnavailable);
  core->record_health_check(*d0, true);
  CHECK_FALSE(d0->healthy());
  core->record_health_check(*d0, true);  // --health-success-threshold 2
  CHECK(d0->healthy());
  CHECK(core->pick_pair("", t0));
  CHECK(contains(core->metrics_text(t0), "sgl_router_worker_health{worker=\"http://d0:31001\"} 1"));
}

TEST_CASE("core: cache_aware in PD mode routes a shared prefix to the same prefill worker") {
  auto core = pd_core();  // cache_aware for both phases, as SGLang's default
  CHECK(core->needs_request_text());
  std::string system(200, 's');
  std::string first;
  for (int i = 0; i < 5; ++i) {
    auto pair = core->pick_pair(system + std::to_string(i), t0).value();
    if (i == 0) {
      first = pair.prefill.worker->url();
      CHECK(pair.prefill.decision == Decision::kCacheMiss);
    } else {
      CHECK(pair.prefill.worker->url() == first);
      CHECK(pair.prefill.decision == Decision::kCacheHit);
    }
  }
  auto& ca = dynamic_cast<CacheAwarePolicy&>(core->policy(WorkerType::kPrefill));
  CHECK(ca.cache_hits() == 4);
  std::string m = core->metrics_text(t0);
  // Both phases run cache_aware: 4 hits each.
  CHECK(contains(m, "sgl_router_cache_hits_total 8"));
  CHECK(contains(m, "sgl_router_cache_misses_total 2"));
  CHECK(contains(m, "sgl_router_policy_decisions_total{policy=\"cache_aware\",worker=\"" + first + "\"} 5"));
  CHECK(contains(m, "sgl_router_tree_size{worker=\"" + first + "\"} 205"));  // 200 + "0".."4"

  // Removing the worker drops its tenant and its gauges.
  REQUIRE(core->remove_worker(first));
  CHECK_FALSE(ca.tree().has_tenant(first));
  m = core->metrics_text(t0);
  CHECK_FALSE(contains(m, "sgl_router_tree_size{worker=\"" + first + "\"}"));
  CHECK_FALSE(contains(m, "sgl_router_worker_load{worker=\"" + first + "\"}"));
  CHECK(contains(m, "sgl_router_active_workers 2"));
}

TEST_CASE("core: a request that outlives its worker's removal finishes harmlessly") {
  auto core = pd_core();
  auto pair = core->pick_pair("", t0).value();
  std::string url = pair.decode.worker->url();
  REQUIRE(core->remove_worker(url));
  CHECK_FALSE(pair.decode.worker->registered());
  core->record_outcome(*pair.decode.worker, AttemptResult::http(500), t0);  // ignored
  CHECK(pair.decode.worker->breaker().total_failures() == 0);
  std::string m = core->metrics_text(t0);
  CHECK_FALSE(contains(m, "sgl_router_cb_outcomes_total{outcome=\"failure\",worker=\"" + url));
  CHECK_FALSE(contains(m, "sgl_router_worker_load{worker=\"" + url));
}

TEST_CASE("core: metrics text has SGLang's families and the admission gauges") {
  auto core = pd_core();
  RouterMetrics& m = core->metrics();
  m.record_request("/generate");
  m.record_request_duration("/generate", 0.2s);
  m.record_request_error("/generate", "no_workers");
  m.record_retry("/generate");
  m.record_retry_backoff(50ms, 1);
  m.record_retries_exhausted("/generate");
  m.record_pd_request("/generate");
  m.record_pd_prefill_error("http://p0:30001");
  REQUIRE(core->admission().try_acquire());
  std::string t = core->metrics_text(t0);
  for (const char* s : {"sgl_router_requests_total{route=\"/generate\"} 1",
                        "sgl_router_request_duration_seconds_bucket{route=\"/generate\",le=\"0.25\"} 1",
                        "sgl_router_request_errors_total{error_type=\"no_workers\",route=\"/generate\"} 1",
                        "sgl_router_retries_total{route=\"/generate\"} 1",
                        "sgl_router_retry_backoff_duration_seconds_count{attempt=\"1\"} 1",
                        "sgl_router_retries_exhausted_total{route=\"/generate\"} 1",
                        "sgl_router_pd_requests_total{route=\"/generate\"} 1",
                        "sgl_router_pd_prefill_errors_total{worker=\"http://p0:30001\"} 1",
                        "sgl_router_worker_load{worker=\"http://d0:31001\"} 0",
                        "sgl_router_concurrent_requests 1", "sgl_router_queued_requests 0",
                        "# TYPE sgl_router_cb_state gauge"}) {
    CAPTURE(s);
    CHECK(contains(t, s));
  }
}

TEST_CASE("core: maintain() runs the cache_aware eviction when due") {
  RouterCoreConfig cfg = core_config_from_options(pd_options());
  cfg.cache.max_tree_size = 10;
  cfg.cache.eviction_interval = 60s;
  auto core = pd_core(cfg);
  core->maintain(t0);
  for (int i = 0; i < 10; ++i) (void)core->pick_pair("some longer prompt text " + std::to_string(i), t0);
  auto& ca = dynamic_cast<CacheAwarePolicy&>(core->policy(WorkerType::kPrefill));
  auto biggest = [&] {
    size_t m = 0;
    for (const auto& t : ca.tree().tenants()) m = std::max(m, ca.tree().tenant_size(t));
    return m;
  };
  CHECK(biggest() > 10);
  core->maintain(t0 + 59s);
  CHECK(biggest() > 10);
  core->maintain(t0 + 60s);
  CHECK(biggest() <= 10);
}

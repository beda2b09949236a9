#include "roles/worker/worker_server.h"

#include <chrono>
#include <ctime>
#include <mutex>

#include <spdlog/spdlog.h>

#include "common/build_info.h"
#include "net/auth.h"
#include "roles/worker/api_call.h"
#include "roles/worker/api_fields.h"
#include "roles/worker/generate_api.h"
#include "roles/worker/openai_api.h"
#include "roles/worker/worker_config.h"

namespace pdctl::worker {

using nlohmann::json;

namespace {

// SGLang's HEALTH_CHECK_TIMEOUT.
constexpr std::chrono::seconds kHealthGenerateTimeout{20};

const net::Headers& text_plain() {
  static const net::Headers h{{"Content-Type", "text/plain; charset=utf-8"}};
  return h;
}

}  // namespace

struct WorkerApi::FlushWaits {
  std::unordered_map<uint64_t, net::Response> waiting;
  uint64_t last_id = 0;
};

WorkerApi::WorkerApi(net::EventLoop& loop, const roles::WorkerOptions& options, WorkerMetrics& metrics)
    : loop_(loop),
      options_(options),
      metrics_(metrics),
      dispatcher_(CallDispatcher::create(loop, &metrics, static_cast<uint64_t>(options.random_seed))),
      start_time_(static_cast<int64_t>(std::time(nullptr))),
      flush_waits_(std::make_shared<FlushWaits>()) {
  model_.name = served_model_name(options);
}

WorkerApi::~WorkerApi() { dispatcher_->set_engine(nullptr); }

void WorkerApi::set_engine(engine::EngineService* engine) {
  engine_ = engine;
  dispatcher_->set_engine(engine);
  model_.tokenizer = engine->tokenizer();
  model_.context_length = engine->context_length();
  model_.vocab_size = engine->model_config().vocab_size;
  if (state_ == ServerState::kLoading) state_ = ServerState::kReady;
}

void WorkerApi::detach_engine() {
  engine_ = nullptr;
  dispatcher_->set_engine(nullptr);
  if (state_ == ServerState::kReady) state_ = ServerState::kDraining;
}

void WorkerApi::begin_drain() { state_ = ServerState::kDraining; }

const ApiModel* WorkerApi::model_for_request(net::Response& resp) {
  switch (state_) {
    case ServerState::kReady: return &model_;
    case ServerState::kLoading:
      send_api_error(resp, ApiError{503, "the model is still loading", "", ""});
      return nullptr;
    case ServerState::kDraining:
      send_api_error(resp, ApiError{503, "the server is shutting down", "", ""});
      return nullptr;
  }
  return nullptr;
}

const ApiModel* WorkerApi::model_for_info(net::Response& resp) {
  if (engine_) return &model_;
  send_api_error(resp, ApiError{503, state_ == ServerState::kLoading ? "the model is still loading"
                                                                     : "the server is shutting down",
                                "", ""});
  return nullptr;
}

void WorkerApi::add_routes(net::HttpServer& server) {
  const std::string key = options_.api_key.value_or("");
  auto guard = [&key](net::Handler h) { return net::require_bearer(key, std::move(h)); };
  // SGLang's /health is for load balancers and needs no key.
  server.route("GET", "/health", [this](const net::Request&, net::Response r) { route_health(std::move(r)); });
  server.route("GET", "/health_generate",
               guard([this](const net::Request&, net::Response r) { route_health_generate(std::move(r)); }));
  server.route("GET", "/get_model_info",
               guard([this](const net::Request&, net::Response r) { route_model_info(std::move(r)); }));
  server.route("GET", "/get_server_info",
               guard([this](const net::Request&, net::Response r) { route_server_info(std::move(r)); }));
  server.route("GET", "/get_load", guard([this](const net::Request&, net::Response r) { route_load(std::move(r)); }));
  for (const char* m : {"GET", "POST"}) {
    server.route(m, "/flush_cache",
                 guard([this](const net::Request&, net::Response r) { route_flush_cache(std::move(r)); }));
  }
  server.route("POST", "/abort_request",
               guard([this](const net::Request& q, net::Response r) { route_abort(q, std::move(r)); }));
  server.route("GET", "/metrics", guard([this](const net::Request&, net::Response r) { route_metrics(std::move(r)); }));
  add_generate_routes(*this, server, key);
  add_openai_routes(*this, server, key);
}

void WorkerApi::route_health(net::Response resp) {
  if (state_ != ServerState::kReady) {
    return send_api_error(resp, ApiError{503, state_ == ServerState::kLoading ? "the model is still loading"
                                                                              : "the server is shutting down",
                                         "", ""});
  }
  resp.send(200, "", text_plain());
}

void WorkerApi::route_health_generate(net::Response resp) {
  if (!model_for_request(resp)) return;
  dispatcher_->health_generate(kHealthGenerateTimeout, [resp](bool ok) mutable {
    if (ok) return resp.send(200, "", text_plain());
    send_api_error(resp, ApiError{503, "the engine did not generate a token", "", ""});
  });
}

void WorkerApi::route_model_info(net::Response resp) {
  json j;
  j["model_path"] = options_.model_path;
  j["tokenizer_path"] = options_.skip_tokenizer_init ? json(nullptr) : json(tokenizer_path(options_));
  j["is_generation"] = true;
  j["preferred_sampling_params"] = nullptr;
  j["weight_version"] = "default";
  j["served_model_name"] = model_.name;
  j["load_format"] = options_.load_format;
  if (engine_) {
    j["context_length"] = model_.context_length;
    j["vocab_size"] = model_.vocab_size;
    const engine::Tokenizer* tok = engine_->tokenizer();
    j["chat_template"] = tok && !tok->chat_template_name().empty() ? json(tok->chat_template_name()) : json(nullptr);
  }
  resp.send(200, j.dump());
}

void WorkerApi::route_server_info(net::Response resp) {
  json j = server_args_json(options_);
  j["version"] = build::kVersion;
  j["status"] = state_ == ServerState::kReady ? "ready" : state_ == ServerState::kLoading ? "loading" : "draining";
  json internal = json::object();
  if (engine_) {
    const engine::EngineLoad load = engine_->load();
    const engine::EngineCounters c = engine_->counters();
    j["max_total_num_tokens"] = load.total_tokens;
    j["context_length"] = model_.context_length;
    j["vocab_size"] = model_.vocab_size;
    internal = {{"num_running_reqs", load.running_requests},
                {"num_queue_reqs", load.queued_requests},
                {"num_used_tokens", load.tokens_in_use},
                {"num_cached_tokens", load.cached_tokens},
                {"requests_finished", c.requests_finished},
                {"requests_aborted", c.requests_aborted},
                {"prompt_tokens", c.prompt_tokens},
                {"generated_tokens", c.generated_tokens},
                {"cache_hit_tokens", c.cache_hit_tokens},
                {"cache_query_tokens", c.cache_query_tokens},
                {"forward_steps", c.forward_steps},
                {"forward_seconds", c.forward_seconds}};
  }
  j["internal_states"] = json::array({std::move(internal)});
  resp.send(200, j.dump(-1, ' ', false, json::error_handler_t::replace));
}

void WorkerApi::route_load(net::Response resp) {
  if (!model_for_info(resp)) return;
  const engine::EngineLoad load = engine_->load();
  // SGLang's GetLoadReqOutput per data-parallel rank (num_reqs counts running and waiting
  // requests); pdctl adds the running requests and the pool's size.
  json rank = {{"dp_rank", 0},
               {"num_reqs", load.running_requests + load.queued_requests},
               {"num_running_reqs", load.running_requests},
               {"num_waiting_reqs", load.queued_requests},
               {"num_tokens", load.tokens_in_use},
               {"num_cached_tokens", load.cached_tokens},
               {"num_total_tokens", load.total_tokens}};
  resp.send(200, json::array({std::move(rank)}).dump());
}

void WorkerApi::route_flush_cache(net::Response resp) {
  if (!model_for_info(resp)) return;
  const uint64_t id = ++flush_waits_->last_id;
  flush_waits_->waiting.emplace(id, resp);
  // The engine answers on its thread: only the id and the status travel back.
  engine_->flush_cache([&loop = loop_, weak = std::weak_ptr<FlushWaits>(flush_waits_), id](Status st) {
    loop.post([weak, id, st = std::move(st)] {
      auto waits = weak.lock();
      if (!waits) return;
      auto it = waits->waiting.find(id);
      if (it == waits->waiting.end()) return;
      net::Response r = std::move(it->second);
      waits->waiting.erase(it);
      // SGLang answers 400 when requests are running or waiting.
      if (st.is_ok()) return r.send(200, "Cache flushed.\n", text_plain());
      send_api_error(r, ApiError{400, "the cache was not flushed: " + st.message(), "", ""});
    });
  });
}

void WorkerApi::route_abort(const net::Request& req, net::Response resp) {
  if (!model_for_info(resp)) return;
  auto body = parse_json_object(req.body);
  if (!body) return send_api_error(resp, body.status());
  FieldReader r(*body);
  auto rid = r.string("rid");
  const bool all = r.boolean("abort_all").value_or(false);
  if (!r.ok()) return send_api_error(resp, r.status());
  if (!rid && !all) return send_api_error(resp, Status::invalid_argument("give 'rid' (or 'abort_all': true)"));
  if (all) dispatcher_->abort_all();
  if (rid) dispatcher_->abort_rid(*rid);
  resp.send(200, "", text_plain());
}

void WorkerApi::route_metrics(net::Response resp) {
  if (engine_) metrics_.set_engine_state(engine_->load(), engine_->counters());
  resp.send(200, metrics_.serialize(), net::Headers{{"Content-Type", "text/plain; version=0.0.4; charset=utf-8"}});
}

}  // namespace pdctl::worker

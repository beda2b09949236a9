#pragma once
// The worker API of `pdctl serve`, `prefill` and `decode`: every route, on one HttpServer,
// over one EngineService. Routes (README, "Worker API"):
//   generation   POST /generate, /v1/completions, /v1/chat/completions   (generate_api, openai_api)
//   tokenizer    POST /v1/tokenize, /v1/detokenize (and without /v1)      (openai_api)
//   models       GET  /v1/models, /v1/models/{model}                     (openai_api)
//   operations   GET  /health, /health_generate, /get_model_info, /get_server_info, /get_load,
//                     /metrics; POST /flush_cache, /abort_request         (here)
// --api-key guards every route but /health.
//
// Lifecycle: the server listens while the model loads; until set_engine() every route but
// the info routes answers 503, /health too. begin_drain() (SIGTERM) makes generation and
// /health answer 503 again while the requests in flight finish.
//
// Loop thread only.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "engine/engine_service.h"
#include "net/event_loop.h"
#include "net/http_server.h"
#include "roles/worker/api_parsing.h"
#include "roles/worker/call_dispatcher.h"
#include "roles/worker/worker_metrics.h"
#include "roles/worker/worker_options.h"

namespace pdctl::worker {

enum class ServerState { kLoading, kReady, kDraining };

class WorkerApi {
 public:
  // `metrics` must outlive the WorkerApi.
  WorkerApi(net::EventLoop& loop, const roles::WorkerOptions& options, WorkerMetrics& metrics);
  ~WorkerApi();
  WorkerApi(const WorkerApi&) = delete;
  WorkerApi& operator=(const WorkerApi&) = delete;

  // Registers every route on `server`.
  void add_routes(net::HttpServer& server);

  // The engine is up: the API serves from now on (unless draining). `engine` must stay
  // valid until detach_engine().
  void set_engine(engine::EngineService* engine);
  // Forgets the engine: call before shutting it down.
  void detach_engine();
  // New generation requests and /health get 503; calls in flight go on.
  void begin_drain();
  ServerState state() const { return state_; }

  // For the route modules. model_for_request(): the model when generation requests are
  // served now; otherwise it answers `resp` with 503 and returns null.
  const ApiModel* model_for_request(net::Response& resp);
  // The model for tokenizer and info routes (ready or draining), or 503 as above.
  const ApiModel* model_for_info(net::Response& resp);
  CallDispatcher& dispatcher() { return *dispatcher_; }
  WorkerMetrics& metrics() { return metrics_; }
  const roles::WorkerOptions& options() const { return options_; }
  int64_t start_time() const { return start_time_; }

 private:
  void route_health(net::Response resp);
  void route_health_generate(net::Response resp);
  void route_model_info(net::Response resp);
  void route_server_info(net::Response resp);
  void route_load(net::Response resp);
  void route_flush_cache(net::Response resp);
  void route_abort(const net::Request& req, net::Response resp);
  void route_metrics(net::Response resp);

  net::EventLoop& loop_;
  roles::WorkerOptions options_;
  WorkerMetrics& metrics_;
  std::shared_ptr<CallDispatcher> dispatcher_;
  engine::EngineService* engine_ = nullptr;
  ServerState state_ = ServerState::kLoading;
  ApiModel model_;
  int64_t start_time_ = 0;  // unix seconds ("created" of /v1/models)
  // /flush_cache replies waiting for the engine thread's answer, by id: only ids cross
  // threads, Responses stay on the loop.
  struct FlushWaits;
  std::shared_ptr<FlushWaits> flush_waits_;
};

}  // namespace pdctl::worker

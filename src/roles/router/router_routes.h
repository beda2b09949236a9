#pragma once
// The router's routes besides the generation API (router_server.cpp):
//   info_routes.cpp   /health, /liveness, /readiness, /health_generate, /get_server_info,
//                     /get_model_info, /v1/models, /v1/tokenize, /v1/detokenize,
//                     /flush_cache, /get_loads, /metrics
//   worker_admin.cpp  POST/GET /workers, GET/DELETE /workers/{url}, and SGLang's older
//                     /add_worker, /remove_worker, /list_workers
// With --api-key, the API routes (tokenize included) and the admin routes (workers,
// /flush_cache, /get_loads) need "Authorization: Bearer KEY"; health, readiness, model
// and server info and /metrics stay open, as in SGLang (whose metrics have a port of
// their own).
#include <memory>
#include <string>

#include "net/http_server.h"
#include "roles/router/health_monitor.h"
#include "roles/router/router_context.h"

namespace pdctl::router {

struct RouteDeps {
  RouterContext& ctx;
  HealthMonitor& health;
  std::string api_key;  // "" when --api-key is not set
};

void add_info_routes(net::HttpServer& server, const RouteDeps& deps);
void add_admin_routes(net::HttpServer& server, const RouteDeps& deps);

// The worker that answers a question about the deployment (model, server info,
// tokenizer): the first available regular worker, or in PD mode the first available
// prefill worker (SGLang asks its first prefill worker); nullptr when there is none.
std::shared_ptr<Worker> info_worker(RouterCore& core, TimePoint now);

}  // namespace pdctl::router

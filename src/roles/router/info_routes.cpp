// Health, readiness, deployment info, cache and load administration, metrics.
#include <fmt/format.h>

#include "net/auth.h"
#include "roles/router/router_routes.h"

namespace pdctl::router {
namespace {

using nlohmann::json;
using std::chrono::seconds;

void send_json(net::Response& resp, int status, const json& body) {
  resp.send(status, body.dump(-1, ' ', false, json::error_handler_t::replace));
}

// Sends `method target` (the client's body and headers when `with_body`) to `worker` and
// answers with its response, whole. These routes are small and not retried.
void forward_once(RouterContext& ctx, net::HttpClient& client, const Worker& worker, std::string method,
                  std::string path, const net::Request* with_body, net::Response resp) {
  auto up = ctx.upstreams.get(worker.url());
  if (!up) return resp.send_error(502, up.status().message());
  net::ClientRequest req;
  req.method = std::move(method);
  req.target = (*up)->prefix + path;
  if (with_body != nullptr) {
    req.headers = forward_request_headers(with_body->headers);
    req.body = with_body->body;
  }
  req.response_header_timeout = ctx.request_timeout();
  req.idle_read_timeout = ctx.request_timeout();
  req.retry_if_stale = true;
  std::string url = worker.url();
  auto h = client.fetch((*up)->endpoint, std::move(req), [resp, url](Result<net::HttpResponse> r) mutable {
    if (!r) {
      return resp.send_error(gateway_status(classify_transport(r.status())),
                             fmt::format("worker {}: {}", url, r.status().message()));
    }
    resp.send(r->status, std::move(r->body), forward_response_headers(r->headers));
  });
  resp.on_close([h]() mutable { h.cancel(); });
}

// GET `path` on the info worker.
net::Handler forward_get(RouteDeps d, std::string path) {
  return [d, path](const net::Request&, net::Response resp) {
    auto w = info_worker(d.ctx.core, d.ctx.now());
    if (!w) return resp.send_error(503, "no worker available to answer");
    forward_once(d.ctx, d.ctx.control, *w, "GET", path, nullptr, std::move(resp));
  };
}

// POST `path` with the client's body on the info worker.
net::Handler forward_post(RouteDeps d, std::string path) {
  return [d, path](const net::Request& req, net::Response resp) {
    auto w = info_worker(d.ctx.core, d.ctx.now());
    if (!w) return resp.send_error(503, "no worker available to answer");
    forward_once(d.ctx, d.ctx.client, *w, "POST", path, &req, std::move(resp));
  };
}

json worker_counts(const RouterCore& core, WorkerType type) {
  size_t healthy = 0, total = 0;
  for (const auto& w : core.workers().all()) {
    if (w->type() != type) continue;
    ++total;
    healthy += w->healthy() ? 1 : 0;
  }
  return {{"healthy", healthy}, {"total", total}};
}

void readiness(const RouteDeps& d, net::Response resp) {
  RouterCore& core = d.ctx.core;
  if (!d.health.started_up()) {
    json waiting = json::array();
    for (const auto& u : d.health.pending()) waiting.push_back(u);
    return send_json(resp, 503, {{"status", "not_ready"}, {"reason", "waiting for workers to start"},
                                 {"waiting_for", std::move(waiting)}});
  }
  if (core.pd_mode()) {
    json p = worker_counts(core, WorkerType::kPrefill);
    json dd = worker_counts(core, WorkerType::kDecode);
    bool ready = p["healthy"].get<size_t>() > 0 && dd["healthy"].get<size_t>() > 0;
    json body = {{"status", ready ? "ready" : "not_ready"}, {"prefill", p}, {"decode", dd}};
    if (!ready) {
      std::string reason;
      if (p["healthy"].get<size_t>() == 0) reason = "no healthy prefill workers";
      if (dd["healthy"].get<size_t>() == 0) reason += std::string(reason.empty() ? "" : ", ") + "no healthy decode workers";
      body["reason"] = reason;
    }
    return send_json(resp, ready ? 200 : 503, body);
  }
  json r = worker_counts(core, WorkerType::kRegular);
  bool ready = r["healthy"].get<size_t>() > 0;
  json body = {{"status", ready ? "ready" : "not_ready"},
               {"healthy_workers", r["healthy"]},
               {"total_workers", r["total"]}};
  if (!ready) body["reason"] = "no healthy workers";
  send_json(resp, ready ? 200 : 503, body);
}

// /health_generate: the worker's own check, on one available worker (PD: on one prefill
// and one decode worker, both must pass), as SGLang.
void health_generate(const RouteDeps& d, net::Response resp) {
  RouterCore& core = d.ctx.core;
  TimePoint now = d.ctx.now();
  std::vector<std::shared_ptr<Worker>> targets;
  auto first_of = [&](WorkerType t) -> std::shared_ptr<Worker> {
    for (const auto& w : core.workers().all()) {
      if (w->type() == t && w->available(now)) return w;
    }
    return nullptr;
  };
  if (core.pd_mode()) {
    auto p = first_of(WorkerType::kPrefill);
    auto dd = first_of(WorkerType::kDecode);
    if (!p || !dd) return resp.send_error(503, "no healthy prefill/decode pair available");
    targets = {p, dd};
  } else {
    auto w = first_of(WorkerType::kRegular);
    if (!w) return resp.send_error(503, "no healthy worker available");
    targets = {w};
  }
  struct State {
    size_t left;
    std::vector<std::string> errors;
    std::vector<std::string> passed;
  };
  auto st = std::make_shared<State>(State{targets.size(), {}, {}});
  for (const auto& w : targets) {
    auto up = d.ctx.upstreams.get(w->url());
    if (!up) {
      st->errors.push_back(fmt::format("{}: {}", w->url(), up.status().message()));
      if (--st->left == 0) resp.send_error(503, fmt::format("health_generate failed: {}", st->errors.front()));
      continue;
    }
    net::ClientRequest req;
    req.method = "GET";
    req.target = (*up)->prefix + "/health_generate";
    req.response_header_timeout = d.ctx.request_timeout();
    std::string url = w->url();
    d.ctx.control.fetch((*up)->endpoint, std::move(req), [st, resp, url](Result<net::HttpResponse> r) mutable {
      if (!r) {
        st->errors.push_back(fmt::format("{}: {}", url, r.status().message()));
      } else if (r->status < 200 || r->status >= 300) {
        st->errors.push_back(fmt::format("{} answered {}", url, r->status));
      } else {
        st->passed.push_back(url);
      }
      if (--st->left > 0) return;
      if (!st->errors.empty()) {
        std::string all;
        for (const auto& e : st->errors) all += (all.empty() ? "" : "; ") + e;
        return resp.send_error(503, "health_generate failed: " + all);
      }
      send_json(resp, 200, {{"status", "ok"}, {"workers", st->passed}});
    });
  }
}

// POST /flush_cache to every worker: 200 when all flushed, 206 with the errors otherwise
// (SGLang's statuses).
void flush_cache(const RouteDeps& d, net::Response resp) {
  auto workers = d.ctx.core.workers().all();
  if (workers.empty()) return send_json(resp, 200, {{"message", "no workers"}, {"flushed", json::array()}});
  struct State {
    size_t left;
    json flushed = json::array();
    json errors = json::array();
  };
  auto st = std::make_shared<State>();
  st->left = workers.size();
  auto one_done = [st, resp]() mutable {
    if (--st->left > 0) return;
    bool ok = st->errors.empty();
    send_json(resp, ok ? 200 : 206,
              {{"message", ok ? "Cache flushed on every worker" : "Cache flushed on some workers"},
               {"flushed", st->flushed},
               {"errors", st->errors}});
  };
  for (const auto& w : workers) {
    auto up = d.ctx.upstreams.get(w->url());
    if (!up) {
      st->errors.push_back(fmt::format("{}: {}", w->url(), up.status().message()));
      one_done();
      continue;
    }
    net::ClientRequest req;
    req.method = "POST";
    req.target = (*up)->prefix + "/flush_cache";
    req.response_header_timeout = seconds(d.ctx.opts.health_check_timeout_secs * 6);
    std::string url = w->url();
    d.ctx.control.fetch((*up)->endpoint, std::move(req), [st, url, one_done](Result<net::HttpResponse> r) mutable {
      if (!r) {
        st->errors.push_back(fmt::format("{}: {}", url, r.status().message()));
      } else if (r->status < 200 || r->status >= 300) {
        st->errors.push_back(fmt::format("{} answered {}", url, r->status));
      } else {
        st->flushed.push_back(url);
      }
      one_done();
    });
  }
}

}  // namespace

std::shared_ptr<Worker> info_worker(RouterCore& core, TimePoint now) {
  WorkerType t = core.pd_mode() ? WorkerType::kPrefill : WorkerType::kRegular;
  std::shared_ptr<Worker> fallback;
  for (const auto& w : core.workers().all()) {
    if (w->type() != t) continue;
    if (w->available(now)) return w;
    if (!fallback) fallback = w;
  }
  return fallback;
}

void add_info_routes(net::HttpServer& server, const RouteDeps& deps) {
  RouteDeps d = deps;
  server.route("GET", "/liveness", [](const net::Request&, net::Response resp) {
    send_json(resp, 200, {{"status", "alive"}});
  });
  server.route("GET", "/readiness", [d](const net::Request&, net::Response resp) { readiness(d, std::move(resp)); });
  server.route("GET", "/health", [d](const net::Request&, net::Response resp) {
    // SGLang's meaning: every worker healthy (vacuously true without workers).
    json unhealthy = json::array();
    size_t total = 0;
    for (const auto& w : d.ctx.core.workers().all()) {
      ++total;
      if (!w->healthy()) unhealthy.push_back(fmt::format("{}: {}", worker_type_name(w->type()), w->url()));
    }
    if (!unhealthy.empty()) {
      return resp.send_error(503, fmt::format("Unhealthy servers: {}", unhealthy.dump()));
    }
    send_json(resp, 200, {{"status", "healthy"}, {"workers", total}});
  });
  server.route("GET", "/health_generate",
               [d](const net::Request&, net::Response resp) { health_generate(d, std::move(resp)); });
  server.route("GET", "/get_server_info", forward_get(d, "/get_server_info"));
  server.route("GET", "/get_model_info", forward_get(d, "/get_model_info"));
  server.route("GET", "/v1/models", forward_get(d, "/v1/models"));
  server.route("POST", "/v1/tokenize", net::require_bearer(d.api_key, forward_post(d, "/v1/tokenize")));
  server.route("POST", "/v1/detokenize", net::require_bearer(d.api_key, forward_post(d, "/v1/detokenize")));
  server.route("POST", "/flush_cache", net::require_bearer(d.api_key, [d](const net::Request&, net::Response resp) {
                 flush_cache(d, std::move(resp));
               }));
  server.route("GET", "/get_loads", net::require_bearer(d.api_key, [d](const net::Request&, net::Response resp) {
                 d.health.refresh_loads([d, resp]() mutable { send_json(resp, 200, d.ctx.core.loads_json()); });
               }));
  server.route("GET", "/metrics", [d](const net::Request&, net::Response resp) {
    resp.send(200, d.ctx.core.metrics_text(d.ctx.now()),
              net::Headers{{"Content-Type", "text/plain; version=0.0.4; charset=utf-8"}});
  });
}

}  // namespace pdctl::router

// Workers at run time: POST /workers {url, worker_type, bootstrap_port} (after the worker
// passes a health check, as SGLang waits for it), GET /workers, GET and DELETE
// /workers/{url} (the URL percent-encoded, or as is: "/workers/http://h:p"), and SGLang's
// older query-string forms.
#include <charconv>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "net/auth.h"
#include "roles/router/router_routes.h"

namespace pdctl::router {
namespace {

using nlohmann::json;

void send_json(net::Response& resp, int status, const json& body) {
  resp.send(status, body.dump(-1, ' ', false, json::error_handler_t::replace));
}

int http_status_of(const Status& st) {
  switch (st.code()) {
    case Errc::kNotFound: return 404;
    case Errc::kAlreadyExists: return 409;
    case Errc::kUnavailable: return 400;  // did not pass its health check (SGLang: 400)
    default: return 400;
  }
}

// Checks the spec, waits for the worker's health, then registers it.
void add_worker(const RouteDeps& d, WorkerSpec spec, net::Response resp) {
  RouterContext& ctx = d.ctx;
  if (auto up = parse_upstream(spec.url); !up) return resp.send_error(400, up.status().message());
  if (ctx.core.find_worker(spec.url)) {
    return resp.send_error(409, fmt::format("worker {} already exists", spec.url));
  }
  // The mode check before the wait: a decode worker for a regular router never fits.
  bool fits = ctx.core.pd_mode() ? spec.type != WorkerType::kRegular : spec.type == WorkerType::kRegular;
  if (!fits) {
    return resp.send_error(400, fmt::format("a {} worker does not belong to a router in {} mode",
                                            worker_type_name(spec.type), ctx.core.pd_mode() ? "PD" : "regular"));
  }
  std::string url = spec.url;
  d.health.wait_healthy(
      url, [resp] { return !resp.closed(); },
      [&ctx, spec = std::move(spec), resp](Status st) mutable {
        if (!st.is_ok()) return resp.send_error(http_status_of(st), st.message());
        if (resp.closed()) return;  // the admin client gave up: do not add behind its back
        auto w = ctx.core.add_worker(spec, ctx.now());
        if (!w) return resp.send_error(http_status_of(w.status()), w.status().message());
        send_json(resp, 200,
                  {{"success", true},
                   {"message", fmt::format("Successfully added {} worker {}", worker_type_name((*w)->type()),
                                           (*w)->url())},
                   {"worker", (*w)->to_json()}});
      });
}

void remove_worker(const RouteDeps& d, std::string_view url, net::Response resp) {
  Status st = d.ctx.core.remove_worker(url);
  if (!st.is_ok()) return resp.send_error(http_status_of(st), st.message());
  if (auto norm = normalize_worker_url(url)) d.ctx.upstreams.forget(*norm);
  send_json(resp, 200, {{"success", true}, {"message", fmt::format("Worker {} removed successfully", url)}});
}

}  // namespace

void add_admin_routes(net::HttpServer& server, const RouteDeps& deps) {
  RouteDeps d = deps;
  const std::string& key = d.api_key;
  server.route("POST", "/workers", net::require_bearer(key, [d](const net::Request& req, net::Response resp) {
                 json body = json::parse(req.body, nullptr, false);
                 if (body.is_discarded()) return resp.send_error(400, "the body is not JSON");
                 auto spec = parse_worker_spec(body);
                 if (!spec) return resp.send_error(400, spec.status().message());
                 add_worker(d, std::move(*spec), std::move(resp));
               }));
  server.route("GET", "/workers", net::require_bearer(key, [d](const net::Request&, net::Response resp) {
                 send_json(resp, 200, d.ctx.core.workers_json(d.ctx.now()));
               }));
  server.route("GET", "/workers/{url...}", net::require_bearer(key, [d](const net::Request& req, net::Response resp) {
                 auto w = d.ctx.core.find_worker(req.param("url"));
                 if (!w) return resp.send_error(404, fmt::format("worker {} not found", req.param("url")));
                 d.ctx.core.workers_json(d.ctx.now());  // brings breaker states up to date
                 send_json(resp, 200, w->to_json());
               }));
  server.route("DELETE", "/workers/{url...}",
               net::require_bearer(key, [d](const net::Request& req, net::Response resp) {
                 remove_worker(d, req.param("url"), std::move(resp));
               }));

  // SGLang's older admin API: the URL (and here optionally worker_type and
  // bootstrap_port) in the query string.
  server.route("POST", "/add_worker", net::require_bearer(key, [d](const net::Request& req, net::Response resp) {
                 auto url = req.query_param("url");
                 if (!url) return resp.send_error(400, "the query parameter 'url' is required");
                 json body = {{"url", *url}};
                 if (auto t = req.query_param("worker_type")) body["worker_type"] = *t;
                 if (auto p = req.query_param("bootstrap_port")) {
                   int port = 0;
                   auto [end, ec] = std::from_chars(p->data(), p->data() + p->size(), port);
                   if (ec != std::errc() || end != p->data() + p->size()) {
                     return resp.send_error(400, "'bootstrap_port' must be an integer");
                   }
                   body["bootstrap_port"] = port;
                 }
                 auto spec = parse_worker_spec(body);
                 if (!spec) return resp.send_error(400, spec.status().message());
                 add_worker(d, std::move(*spec), std::move(resp));
               }));
  server.route("POST", "/remove_worker", net::require_bearer(key, [d](const net::Request& req, net::Response resp) {
                 auto url = req.query_param("url");
                 if (!url) return resp.send_error(400, "the query parameter 'url' is required");
                 remove_worker(d, *url, std::move(resp));
               }));
  server.route("GET", "/list_workers", net::require_bearer(key, [d](const net::Request&, net::Response resp) {
                 json urls = json::array();
                 for (const auto& w : d.ctx.core.workers().all()) urls.push_back(w->url());
                 send_json(resp, 200, {{"urls", std::move(urls)}});
               }));
}

}  // namespace pdctl::router

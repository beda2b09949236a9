#include "roles/router/router_server.h"

#include <algorithm>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "net/auth.h"
#include "roles/router/pd_dispatch.h"
#include "roles/router/regular_request.h"
#include "roles/router/router_routes.h"

namespace pdctl::router {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

net::ServerOptions server_options(const roles::RouterOptions& o) {
  net::ServerOptions s;
  s.host = o.host;
  s.port = o.port;
  s.max_payload_size = static_cast<uint64_t>(o.max_payload_size);
  // A generation request's body arrives at once; its response may stream for as long as
  // the request may take.
  s.write_stall_timeout = seconds(std::max(60, o.request_timeout_secs));
  return s;
}

net::ClientOptions api_client_options(const roles::RouterOptions& o) {
  net::ClientOptions c;
  // Connections open on demand; the cap only has to exceed what admission lets through
  // (a request holds one connection per worker it uses).
  size_t limit = o.max_concurrent_requests > 0 ? static_cast<size_t>(o.max_concurrent_requests) : 4096;
  c.max_connections_per_upstream = std::max<size_t>(1024, limit);
  c.max_queued_per_upstream = std::max<size_t>(4096, limit + static_cast<size_t>(o.queue_size));
  c.connect_timeout = seconds(10);
  c.queue_timeout = seconds(o.request_timeout_secs);
  // Per request the router sets response and idle timeouts to --request-timeout-secs.
  return c;
}

net::ClientOptions control_client_options(const roles::RouterOptions& o) {
  net::ClientOptions c;
  c.max_connections_per_upstream = 8;
  c.connect_timeout = seconds(o.health_check_timeout_secs);
  c.queue_timeout = seconds(o.health_check_timeout_secs);
  return c;
}

}  // namespace

Result<std::unique_ptr<RouterServer>> RouterServer::create(net::EventLoop& loop, roles::RouterOptions opts,
                                                           std::optional<uint64_t> seed) {
  TimePoint now = Clock::now();
  PDCTL_ASSIGN_OR_RETURN(auto core, RouterCore::create(core_config_from_options(opts), seed, now));
  PDCTL_RETURN_IF_ERROR(core->add_configured_workers(opts, now));
  for (const auto& w : core->workers().all()) {
    if (auto up = parse_upstream(w->url()); !up) return up.status().with_context("worker " + w->url());
  }
  return std::unique_ptr<RouterServer>(new RouterServer(loop, std::move(opts), std::move(core)));
}

RouterServer::RouterServer(net::EventLoop& loop, roles::RouterOptions opts, std::unique_ptr<RouterCore> core)
    : loop_(loop),
      opts_(std::move(opts)),
      core_(std::move(core)),
      deadlines_(loop),
      ctx_{loop, opts_, *core_, client_, control_, {}, deadlines_, {}},
      client_(loop, api_client_options(opts_)),
      control_(loop, control_client_options(opts_)),
      health_(ctx_),
      admission_timer_(loop),
      server_(loop, server_options(opts_)) {
  need_text_ = core_->needs_request_text();
  // PD bodies get the bootstrap fields; otherwise a body is parsed only for cache_aware.
  need_json_ = core_->pd_mode() || need_text_;
  ctx_.on_enqueued = [this] { arm_admission_expiry(); };

  RouteDeps deps{ctx_, health_, opts_.api_key.value_or("")};
  add_api_routes();
  add_info_routes(server_, deps);
  add_admin_routes(server_, deps);
}

RouterServer::~RouterServer() { health_.stop(); }

Status RouterServer::start(std::function<void(Status)> on_startup_failed) {
  PDCTL_RETURN_IF_ERROR(server_.listen());
  spdlog::info("router: {} mode, {} worker(s), policy {}{}", core_->pd_mode() ? "PD" : "regular",
               core_->workers().size(),
               core_->pd_mode() ? fmt::format("prefill {} / decode {}", core_->policy(WorkerType::kPrefill).name(),
                                              core_->policy(WorkerType::kDecode).name())
                                : std::string(core_->policy(WorkerType::kRegular).name()),
               opts_.api_key ? ", API key required" : "");
  health_.start([cb = std::move(on_startup_failed)](Status st) {
    if (!st.is_ok() && cb) cb(std::move(st));
  });
  return Status::ok();
}

void RouterServer::shutdown(milliseconds grace, std::function<void()> done) {
  health_.stop();
  admission_timer_.cancel();
  server_.shutdown(grace, std::move(done));
}

void RouterServer::add_api_routes() {
  std::string key = opts_.api_key.value_or("");
  for (ApiRoute r : {ApiRoute::kGenerate, ApiRoute::kCompletions, ApiRoute::kChatCompletions}) {
    server_.route("POST", route_path(r), net::require_bearer(key, [this, r](const net::Request& req, net::Response resp) {
                    handle_api(r, req, std::move(resp));
                  }));
  }
}

void RouterServer::handle_api(ApiRoute route, const net::Request& req, net::Response resp) {
  core_->metrics().record_request(route_path(route));
  ApiInput in;
  in.route = route;
  in.target = req.target;
  in.headers = forward_request_headers(req.headers);
  if (need_json_) {
    in.json = nlohmann::json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    if (in.json.is_discarded() || !in.json.is_object()) {
      core_->metrics().record_request_error(route_path(route), "invalid_request");
      return resp.send_error(400, "the request body must be a JSON object");
    }
    if (need_text_) in.text = routing_text(route, in.json);
    in.stream = is_streaming(in.json);
    in.logprobs = wants_logprobs(route, in.json);
  }
  // PD re-serializes the parsed body; regular mode forwards the bytes it got.
  if (!core_->pd_mode()) in.body = req.body;

  std::shared_ptr<ApiRequest> r;
  if (core_->pd_mode()) {
    r = std::make_shared<PdRequest>(ctx_, std::move(in), std::move(resp));
  } else {
    r = std::make_shared<RegularRequest>(ctx_, std::move(in), std::move(resp));
  }
  r->submit();
}

void RouterServer::arm_admission_expiry() {
  if (admission_timer_.active()) return;
  auto due = core_->admission().next_deadline();
  if (!due) return;
  auto wait = std::chrono::duration_cast<milliseconds>(*due - Clock::now()) + milliseconds(1);
  admission_timer_.start(std::max(wait, milliseconds(0)), [this] {
    core_->admission().expire(Clock::now());
    arm_admission_expiry();
  });
}

}  // namespace pdctl::router

// `pdctl serve` (and, with the next issue, `prefill` and `decode`): a worker's process.
//
// One event loop runs the HTTP API; it listens at once and answers 503 while a loader
// thread reads the tokenizer and the model and starts the engine (its own thread). A
// start-up error (a broken file: the message names it and the tensor or key) exits 1.
// SIGINT / SIGTERM: stop accepting, /health says 503, requests in flight finish for up
// to kShutdownGrace and are then aborted; exit 0. A second signal exits at once.
#include <chrono>
#include <csignal>
#include <memory>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>

#include "net/event_loop.h"
#include "net/http_server.h"
#include "roles/cli.h"
#include "roles/roles.h"
#include "roles/pd/pd_role.h"
#include "roles/worker/engine_factory.h"
#include "roles/worker/role_extension.h"
#include "roles/worker/worker_config.h"
#include "roles/worker/worker_metrics.h"
#include "roles/worker/worker_server.h"

namespace pdctl::roles {

namespace {

// How long requests in flight may run on after SIGTERM before they are aborted.
constexpr std::chrono::seconds kShutdownGrace{10};

// The loader thread's result, read on the loop thread once it says it is done (and by the
// main thread after joining it, when the loop stopped first).
struct Loaded {
  std::mutex mu;
  Status status;
  std::unique_ptr<engine::EngineService> engine;
  bool done = false;
};

Result<std::unique_ptr<engine::EngineService>> load_engine(const WorkerOptions& opts, worker::RoleExtension* ext) {
  const auto t0 = std::chrono::steady_clock::now();
  auto tok = worker::load_worker_tokenizer(opts);
  if (!tok) return std::move(tok).status();
  auto runner = engine::ModelRunner::create(worker::engine_options(opts), ext ? ext->kv_memory() : kv::KvMemoryProvider{});
  if (!runner) return std::move(runner).status().with_context("loading the model " + opts.model_path);
  const engine::ModelConfig cfg = (*runner)->config();
  const int64_t kv_tokens = (*runner)->max_total_tokens();
  if (ext) PDCTL_RETURN_IF_ERROR(ext->on_model(cfg, (*runner)->kv_pool().geometry()));
  auto svc = worker::start_engine(std::move(*runner), std::move(*tok), worker::scheduler_options(opts),
                                  ext ? ext->engine_hooks() : engine::KvHandoffHooks{});
  if (!svc) return std::move(svc).status();
  spdlog::info("model {} loaded in {:.1f} s: {} layers, hidden {}, vocab {}, context {}, KV pool {} tokens",
               opts.model_path, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
               cfg.num_layers, cfg.hidden_size, cfg.vocab_size, (*svc)->context_length(), kv_tokens);
  return std::move(*svc);
}

// `ext`: the role's additions (null for serve).
int run_serve(const WorkerOptions& opts, worker::RoleExtension* ext) {
  if (opts.model_path.empty()) {
    spdlog::error("--model-path is required");
    return kUsageExitCode;
  }
  net::EventLoop loop;
  worker::WorkerMetrics metrics(worker::served_model_name(opts));
  worker::WorkerApi api(loop, opts, metrics);
  net::HttpServer server(loop, worker::server_options(opts));
  api.add_routes(server);
  if (Status st = server.listen(); !st.is_ok()) {
    spdlog::error("cannot listen on {}:{}: {}", opts.host, opts.port, st.message());
    return 1;
  }
  if (ext) {
    if (Status st = ext->on_listen(loop, api); !st.is_ok()) {
      spdlog::error("{}", st.message());
      return 1;
    }
  }
  spdlog::info("listening on http://{}:{} (503 until the model is loaded)", opts.host, server.port());

  int exit_code = 0;
  bool stopping = false;
  auto stop_now = [&] {
    stopping = true;
    if (ext) ext->on_stop();
    server.shutdown(std::chrono::milliseconds(0), [&loop] { loop.stop(); });
  };

  Loaded loaded;
  std::thread loader([&] {
    auto r = load_engine(opts, ext);
    {
      std::lock_guard lock(loaded.mu);
      if (r) {
        loaded.engine = std::move(*r);
      } else {
        loaded.status = std::move(r).status();
      }
      loaded.done = true;
    }
    // Refused when the loop stopped first: the main thread picks the result up after join.
    loop.post([&] {
      std::lock_guard lock(loaded.mu);
      if (!loaded.status.is_ok()) {
        spdlog::error("{}", loaded.status.message());
        exit_code = 1;
        if (!stopping) stop_now();
        return;
      }
      if (stopping) return;  // a signal came during the load: shut down without serving
      api.set_engine(loaded.engine.get());
      if (ext) ext->on_ready(loaded.engine.get());
      spdlog::info("ready: serving {} at http://{}:{}", worker::served_model_name(opts), opts.host, server.port());
    });
  });

  net::SignalWatcher signals(loop, {SIGINT, SIGTERM}, [&](int signum) {
    if (stopping) {
      spdlog::warn("second signal ({}): exiting now", signum);
      loop.stop();
      return;
    }
    stopping = true;
    if (ext) ext->on_stop();
    spdlog::info("signal {}: finishing the requests in flight (up to {} s), then exiting", signum,
                 kShutdownGrace.count());
    api.begin_drain();
    server.shutdown(kShutdownGrace, [&loop] { loop.stop(); });
  });

  loop.run();
  loader.join();
  api.detach_engine();
  {
    std::lock_guard lock(loaded.mu);
    if (loaded.engine) loaded.engine->shutdown();
    if (ext) ext->after_engine_shutdown();
    loaded.engine.reset();
    if (!loaded.status.is_ok() && exit_code == 0) {
      spdlog::error("{}", loaded.status.message());
      exit_code = 1;
    }
  }
  if (Status closed = loop.close(); !closed.is_ok()) {
    spdlog::error("{}", closed.message());
    if (exit_code == 0) exit_code = 1;
  }
  return exit_code;
}

}  // namespace

int run_worker(const WorkerOptions& opts) {
  switch (opts.role) {
    case WorkerRole::kServe: return run_serve(opts, nullptr);
    case WorkerRole::kPrefill:
    case WorkerRole::kDecode: {
      // The same routes (worker::WorkerApi) over their own engines, plus PD (roles/pd).
      auto ext = pd::make_pd_role(opts);
      if (!ext) {
        spdlog::error("{}", ext.status().message());
        return 1;
      }
      return run_serve(opts, ext->get());
    }
  }
  return 1;
}

}  // namespace pdctl::roles

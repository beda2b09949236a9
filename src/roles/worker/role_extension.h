#pragma once
// What a worker role adds to `pdctl serve`'s process (worker_main.cpp): the PD prefill and
// decode roles (roles/pd) plug in here; serve uses none. Each hook names its thread.
#include <memory>

#include "common/status.h"
#include "engine/engine_service.h"
#include "engine/model_config.h"
#include "kv/kv_memory.h"
#include "kv/kv_pool.h"
#include "net/event_loop.h"

namespace pdctl::worker {

class WorkerApi;

class RoleExtension {
 public:
  virtual ~RoleExtension() = default;
  // Loop thread, before the model loads: routes, servers, the ItemSubmitter.
  virtual Status on_listen(net::EventLoop& loop, WorkerApi& api) = 0;
  // Loader thread: where the KV pool's memory comes from (called during the model's load).
  virtual kv::KvMemoryProvider kv_memory() = 0;
  // Loader thread, once the model and pool exist, before the engine starts.
  virtual Status on_model(const engine::ModelConfig& config, const kv::KvGeometry& geometry) = 0;
  virtual engine::KvHandoffHooks engine_hooks() = 0;
  // Loop thread: the engine serves from now on.
  virtual void on_ready(engine::EngineService* engine) = 0;
  // Loop thread: the process is stopping (stop timers and servers of the loop).
  virtual void on_stop() = 0;
  // Main thread, after the loop ended and the engine was shut down.
  virtual void after_engine_shutdown() = 0;
};

}  // namespace pdctl::worker

#pragma once
// `pdctl prefill` and `pdctl decode`: the worker process of `pdctl serve` (worker_main.cpp)
// with PD disaggregation added through worker::RoleExtension: a UCX transfer engine
// registering the KV pool, the bootstrap server (prefill) or client (decode), and the
// ItemSubmitter that puts the bootstrap between the API and the engine.
#include <memory>

#include "common/status.h"
#include "roles/worker/role_extension.h"
#include "roles/worker/worker_options.h"

namespace pdctl::pd {

Result<std::unique_ptr<worker::RoleExtension>> make_pd_role(const roles::WorkerOptions& opts);

}  // namespace pdctl::pd

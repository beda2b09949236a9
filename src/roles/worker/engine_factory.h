#pragma once
// Starts the engine a worker serves from: EngineService::start over a ModelRunner and the
// tokenizer. One seam where the prefill and decode roles can put their own engines.
#include <memory>
#include <optional>

#include "common/status.h"
#include "engine/engine_service.h"
#include "engine/model_runner.h"
#include "engine/tokenizer.h"

namespace pdctl::worker {

Result<std::unique_ptr<engine::EngineService>> start_engine(std::unique_ptr<engine::ModelRunner> runner,
                                                            std::optional<engine::Tokenizer> tokenizer,
                                                            const engine::SchedulerOptions& options,
                                                            engine::KvHandoffHooks hooks = {});

}  // namespace pdctl::worker

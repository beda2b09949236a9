#include "roles/worker/engine_factory.h"

namespace pdctl::worker {

Result<std::unique_ptr<engine::EngineService>> start_engine(std::unique_ptr<engine::ModelRunner> runner,
                                                            std::optional<engine::Tokenizer> tokenizer,
                                                            const engine::SchedulerOptions& options) {
  // The scheduler (src/engine/engine_service.cpp) is not on main yet; once it is, this is
  //   return engine::EngineService::start(std::move(runner), std::move(tokenizer), options);
  (void)runner;
  (void)tokenizer;
  (void)options;
  return Status::unsupported(
      "`pdctl serve` is not implemented yet: the engine's scheduler (EngineService) has not landed");
}

}  // namespace pdctl::worker

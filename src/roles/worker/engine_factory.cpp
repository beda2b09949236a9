#include "roles/worker/engine_factory.h"

namespace pdctl::worker {

Result<std::unique_ptr<engine::EngineService>> start_engine(std::unique_ptr<engine::ModelRunner> runner,
                                                            std::optional<engine::Tokenizer> tokenizer,
                                                            const engine::SchedulerOptions& options,
                                                            engine::KvHandoffHooks hooks) {
  return engine::EngineService::start(std::move(runner), std::move(tokenizer), options, std::move(hooks));
}

}  // namespace pdctl::worker

// EngineService: the engine thread and the thread-safe edge around the Scheduler.
// Other threads only validate requests and append commands under one mutex; the engine
// thread drains the commands at the start of each step and otherwise works without the
// lock. It sleeps on the condition variable whenever the last step could do nothing.
#include "engine/engine_service.h"

#include <pthread.h>

#include <condition_variable>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <variant>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "engine/model_runner.h"
#include "engine/scheduler.h"

namespace pdctl::engine {
namespace {

struct SubmitCmd {
  std::unique_ptr<Request> request;
};
struct AbortCmd {
  std::string rid;
  std::string reason;
};
struct FlushCmd {
  std::function<void(Status)> done;
};
struct KvArrivedCmd {
  std::string rid;
  int32_t token = 0;
  float logprob = 0;
};
struct ReleasePagesCmd {
  std::vector<int32_t> pages;
};
using Command = std::variant<SubmitCmd, AbortCmd, FlushCmd, KvArrivedCmd, ReleasePagesCmd>;

Status check_options(const SchedulerOptions& o) {
  if (o.max_running_requests < 0) return Status::invalid_argument("max_running_requests must be >= 0");
  if (o.max_queued_requests < 0) return Status::invalid_argument("max_queued_requests must be >= 0");
  if (o.max_prefill_tokens < 1) return Status::invalid_argument("max_prefill_tokens must be >= 1");
  return Status::ok();
}

class EngineServiceImpl final : public EngineService {
 public:
  EngineServiceImpl(std::unique_ptr<ModelRunner> runner, std::optional<Tokenizer> tokenizer,
                    const SchedulerOptions& options, KvHandoffHooks hooks)
      : runner_(std::move(runner)),
        tokenizer_(std::move(tokenizer)),
        options_(options),
        page_size_(runner_->kv_pool().page_size()),
        num_pages_(runner_->kv_pool().num_pages()) {
    scheduler_ = std::make_unique<Scheduler>(*runner_, tokenizer_ ? &*tokenizer_ : nullptr, options_, metrics_,
                                             [this](const std::string& rid) { retire(rid); });
    scheduler_->set_kv_hooks(std::move(hooks));
    thread_ = std::thread([this] { run(); });
    engine_thread_ = thread_.get_id();
    pthread_setname_np(thread_.native_handle(), "pdctl-engine");
  }
  ~EngineServiceImpl() override { shutdown(); }

  Status submit(GenerateRequest request, OutputSink sink) override;
  void abort(const std::string& rid, std::string reason) override;
  void flush_cache(std::function<void(Status)> done) override;
  void kv_arrived(const std::string& rid, int32_t first_token, float logprob) override {
    post(KvArrivedCmd{rid, first_token, logprob});
  }
  void release_pages(std::vector<int32_t> pages) override { post(ReleasePagesCmd{std::move(pages)}); }
  EngineLoad load() const override;
  EngineCounters counters() const override;
  const ModelConfig& model_config() const override { return runner_->config(); }
  int64_t context_length() const override { return runner_->config().context_length; }
  const Tokenizer* tokenizer() const override { return tokenizer_ ? &*tokenizer_ : nullptr; }
  void shutdown() override;

 private:
  Status validate(const GenerateRequest& r) const;
  void post(Command c);
  void run();
  void handle(Command& c);
  void retire(const std::string& rid) {
    std::lock_guard lk(mu_);
    live_rids_.erase(rid);
  }

  // Declared first: destroyed last (the scheduler and its pages point into its pool).
  std::unique_ptr<ModelRunner> runner_;
  std::optional<Tokenizer> tokenizer_;
  const SchedulerOptions options_;
  const int page_size_;   // the pool's geometry never changes: safe to read from any thread
  const int num_pages_;
  SchedulerMetrics metrics_;
  std::unique_ptr<Scheduler> scheduler_;  // engine thread only, once the thread runs

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Command> commands_;              // guarded by mu_
  std::unordered_set<std::string> live_rids_;  // guarded by mu_
  bool stopping_ = false;                      // guarded by mu_
  std::mutex join_mu_;                         // one joiner at a time
  std::thread thread_;
  std::thread::id engine_thread_;
};

Status EngineServiceImpl::validate(const GenerateRequest& r) const {
  const ModelConfig& c = runner_->config();
  if (r.rid.empty()) return Status::invalid_argument("a request needs an rid");
  if (r.input_ids.empty()) return Status::invalid_argument("the prompt is empty");
  for (int32_t t : r.input_ids) {
    if (t < 0 || t >= c.vocab_size) {
      return Status::invalid_argument(fmt::format("token id {} is outside the vocabulary of {}", t, c.vocab_size));
    }
  }
  PDCTL_RETURN_IF_ERROR(r.sampling.validate(c.vocab_size));
  const int64_t prompt = static_cast<int64_t>(r.input_ids.size());
  const int64_t max_new = r.sampling.max_new_tokens;
  if (prompt + max_new > c.context_length) {
    return Status::out_of_range(fmt::format("{} prompt tokens plus max_new_tokens {} exceed the context length {}",
                                            prompt, max_new, c.context_length));
  }
  // The K/V a request can ever hold: its prompt and every output token but the last.
  const int64_t kv_tokens = prompt + std::max<int64_t>(max_new - 1, 0);
  const int64_t pages = (kv_tokens + page_size_ - 1) / page_size_;
  if (pages > num_pages_) {
    return Status::out_of_range(fmt::format("{} prompt tokens plus max_new_tokens {} need {} KV pages; the pool has {}",
                                            prompt, max_new, pages, num_pages_));
  }
  if (!r.stop.empty()) {
    if (!tokenizer_ || !r.detokenize) return Status::invalid_argument("stop strings need the tokenizer and detokenize");
    for (const std::string& s : r.stop) {
      if (s.empty()) return Status::invalid_argument("an empty stop string");
    }
  }
  if (r.logprob_start_len < -1 || r.logprob_start_len >= prompt) {
    return Status::invalid_argument(
        fmt::format("logprob_start_len {} is outside the prompt of {} tokens", r.logprob_start_len, prompt));
  }
  return Status::ok();
}

Status EngineServiceImpl::submit(GenerateRequest request, OutputSink sink) {
  PDCTL_RETURN_IF_ERROR(validate(request));
  // Built here, not on the engine thread: it copies the prompt and sets up the decoder.
  auto r = std::make_unique<Request>(std::move(request), std::move(sink), tokenizer(), options_.default_seed);
  std::lock_guard lk(mu_);
  if (stopping_) return Status::unavailable("the engine is shutting down");
  if (live_rids_.contains(r->req.rid)) {
    return Status::already_exists(fmt::format("a request with rid '{}' is live", r->req.rid));
  }
  if (options_.max_queued_requests > 0 &&
      metrics_.queued.load(std::memory_order_relaxed) >= options_.max_queued_requests) {
    return Status::resource_exhausted(fmt::format("{} requests are queued already", options_.max_queued_requests));
  }
  live_rids_.insert(r->req.rid);
  metrics_.queued.fetch_add(1, std::memory_order_relaxed);
  commands_.emplace_back(SubmitCmd{std::move(r)});
  cv_.notify_one();
  return Status::ok();
}

void EngineServiceImpl::post(Command c) {
  std::lock_guard lk(mu_);
  commands_.push_back(std::move(c));
  cv_.notify_one();
}

void EngineServiceImpl::abort(const std::string& rid, std::string reason) {
  {
    std::lock_guard lk(mu_);
    if (!live_rids_.contains(rid)) return;  // finished already (or never was)
  }
  post(AbortCmd{rid, std::move(reason)});
}

void EngineServiceImpl::flush_cache(std::function<void(Status)> done) {
  {
    std::lock_guard lk(mu_);
    if (!stopping_) {
      commands_.emplace_back(FlushCmd{std::move(done)});
      cv_.notify_one();
      return;
    }
  }
  if (done) done(Status::unavailable("the engine is shutting down"));
}

EngineLoad EngineServiceImpl::load() const {
  EngineLoad l;
  l.running_requests = metrics_.running.load(std::memory_order_relaxed);
  l.queued_requests = metrics_.queued.load(std::memory_order_relaxed);
  l.tokens_in_use = metrics_.tokens_in_use.load(std::memory_order_relaxed);
  l.total_tokens = int64_t{num_pages_} * page_size_;
  l.cached_tokens = metrics_.cached_tokens.load(std::memory_order_relaxed);
  l.transfer_requests = metrics_.awaiting_kv.load(std::memory_order_relaxed);
  return l;
}

EngineCounters EngineServiceImpl::counters() const {
  auto get = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  EngineCounters c;
  c.requests_finished = get(metrics_.requests_finished);
  c.requests_aborted = get(metrics_.requests_aborted);
  c.requests_retracted = get(metrics_.requests_retracted);
  c.prompt_tokens = get(metrics_.prompt_tokens);
  c.generated_tokens = get(metrics_.generated_tokens);
  c.cache_hit_tokens = get(metrics_.cache_hit_tokens);
  c.cache_query_tokens = get(metrics_.cache_query_tokens);
  c.forward_steps = get(metrics_.forward_steps);
  c.forward_seconds = static_cast<double>(get(metrics_.forward_ns)) * 1e-9;
  return c;
}

void EngineServiceImpl::shutdown() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  // From a sink (the engine thread itself) it can only ask: the loop ends after this step.
  if (std::this_thread::get_id() == engine_thread_) return;
  std::lock_guard lk(join_mu_);
  if (thread_.joinable()) thread_.join();
}

void EngineServiceImpl::handle(Command& c) {
  if (auto* s = std::get_if<SubmitCmd>(&c)) {
    scheduler_->add(std::move(s->request));
  } else if (auto* a = std::get_if<AbortCmd>(&c)) {
    scheduler_->abort(a->rid, a->reason, Errc::kCancelled);
  } else if (auto* f = std::get_if<FlushCmd>(&c)) {
    Status st = scheduler_->flush_cache();
    if (f->done) f->done(std::move(st));
  } else if (auto* k = std::get_if<KvArrivedCmd>(&c)) {
    scheduler_->kv_arrived(k->rid, k->token, k->logprob);
  } else if (auto* p = std::get_if<ReleasePagesCmd>(&c)) {
    scheduler_->release_pages(p->pages);
  }
}

void EngineServiceImpl::run() {
  std::vector<Command> batch;
  bool busy = false;  // the last step did something: the next one may too
  for (;;) {
    bool stop = false;
    {
      std::unique_lock lk(mu_);
      if (!busy) cv_.wait(lk, [&] { return stopping_ || !commands_.empty(); });
      batch.swap(commands_);
      stop = stopping_;
    }
    for (Command& c : batch) handle(c);
    batch.clear();
    if (stop) break;
    busy = scheduler_->step();
  }
  scheduler_->abort_all("the engine is shutting down", Errc::kUnavailable);
}

}  // namespace

Result<std::unique_ptr<EngineService>> EngineService::start(std::unique_ptr<ModelRunner> runner,
                                                            std::optional<Tokenizer> tokenizer,
                                                            const SchedulerOptions& options,
                                                            KvHandoffHooks hooks) {
  if (!runner) return Status::invalid_argument("EngineService::start without a model runner");
  PDCTL_RETURN_IF_ERROR(check_options(options));
  std::unique_ptr<EngineService> s = std::make_unique<EngineServiceImpl>(std::move(runner), std::move(tokenizer), options, std::move(hooks));
  return s;
}

}  // namespace pdctl::engine

#include "roles/worker/call_dispatcher.h"

#include <mutex>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace pdctl::worker {

namespace {

double steady_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

struct CallDispatcher::Delivery {
  uint64_t call = 0;
  uint32_t item = 0;
  engine::OutputChunk chunk;
};

// The engine thread's side: chunks wait here until the loop drains them in one go. The
// EventLoop must outlive every push (the engine is shut down before the loop is closed).
class ChunkInbox : public std::enable_shared_from_this<ChunkInbox> {
 public:
  using Consumer = std::function<void(std::vector<CallDispatcher::Delivery>&)>;
  explicit ChunkInbox(net::EventLoop& loop) : loop_(loop) {}

  // Any thread.
  void push(CallDispatcher::Delivery d) {
    bool post = false;
    {
      std::lock_guard lock(mu_);
      pending_.push_back(std::move(d));
      if (!scheduled_) scheduled_ = post = true;
    }
    // A refused post means the loop is stopping: the chunks are dropped with the inbox.
    if (post) loop_.post([self = shared_from_this()] { self->drain(); });
  }
  // Loop thread. Null detaches (chunks still arriving are dropped).
  void set_consumer(Consumer c) { consumer_ = std::move(c); }

 private:
  void drain() {
    std::vector<CallDispatcher::Delivery> batch;
    {
      std::lock_guard lock(mu_);
      batch.swap(pending_);
      scheduled_ = false;
    }
    if (consumer_) consumer_(batch);
  }

  net::EventLoop& loop_;
  std::mutex mu_;
  std::vector<CallDispatcher::Delivery> pending_;  // guarded by mu_
  bool scheduled_ = false;                          // guarded by mu_: a drain is posted
  Consumer consumer_;                               // loop thread
};

std::shared_ptr<CallDispatcher> CallDispatcher::create(net::EventLoop& loop, WorkerMetrics* metrics,
                                                       uint64_t seed_base) {
  std::shared_ptr<CallDispatcher> d(new CallDispatcher(loop, metrics, seed_base));
  d->inbox_->set_consumer([weak = std::weak_ptr<CallDispatcher>(d)](std::vector<Delivery>& batch) {
    if (auto self = weak.lock()) self->on_deliveries(batch);
  });
  return d;
}

CallDispatcher::CallDispatcher(net::EventLoop& loop, WorkerMetrics* metrics, uint64_t seed_base)
    : loop_(loop), metrics_(metrics), seed_base_(seed_base), inbox_(std::make_shared<ChunkInbox>(loop)) {}

uint64_t CallDispatcher::seed_for_rid(const std::string& rid) const {
  uint64_t h = 14695981039346656037ull;  // FNV-1a over the rid, then splitmix64's finalizer
  for (unsigned char c : rid) h = (h ^ c) * 1099511628211ull;
  uint64_t z = h ^ (seed_base_ * 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

CallDispatcher::~CallDispatcher() { inbox_->set_consumer(nullptr); }

Status CallDispatcher::start(const std::shared_ptr<ApiCall>& call, bool record_metrics) {
  if (!engine_) return Status::unavailable("the model is not loaded yet");
  const uint64_t id = call->id();
  Live& live = calls_[id];
  live.call = call;
  live.record_metrics = record_metrics;
  for (size_t i = 0; i < call->size(); ++i) {
    // A prompt's samples after the first wait for it (see the header).
    if (call->spec(i).sample_index > 0) continue;
    if (Status st = submit_item(live, i); !st.is_ok()) {
      for (size_t j = 0; j < i; ++j) {
        if (call->out(j).submitted) engine_->abort(call->spec(j).req.rid, "another item of the request was refused");
      }
      // The aborted items' final chunks find no call and are dropped.
      calls_.erase(id);
      return st;
    }
  }
  if (call->response()) {
    call->response().on_close([weak = weak_from_this(), id] {
      if (auto self = weak.lock()) self->on_client_gone(id);
    });
    // Gone while the body was being parsed: on_close may never fire for it.
    if (call->response().closed()) on_client_gone(id);
  }
  return Status::ok();
}

Status CallDispatcher::submit_item(Live& live, size_t i) {
  ApiCall& call = *live.call;
  const uint64_t id = call.id();
  const uint32_t item = static_cast<uint32_t>(i);
  engine::OutputSink sink = [inbox = inbox_, id, item](engine::OutputChunk&& chunk) {
    inbox->push(Delivery{id, item, std::move(chunk)});
  };
  engine::GenerateRequest req = call.spec(i).req;
  if (!req.sampling.seed) req.sampling.seed = seed_for_rid(req.rid);
  Status st = engine_->submit(std::move(req), std::move(sink));
  if (st.is_ok()) call.out(i).submitted = true;
  return st;
}

void CallDispatcher::submit_followers(Live& live, size_t leader) {
  ApiCall& call = *live.call;
  const ItemSpec& lead = call.spec(leader);
  const ItemOutput& lead_out = call.out(leader);
  // A leader that ended without output (error, abort) decides for its samples.
  const bool failed = lead_out.finished && lead_out.ids.empty() && lead_out.finish.type == engine::FinishInfo::Type::kAbort;
  for (size_t j = 0; j < call.size(); ++j) {
    const ItemSpec& s = call.spec(j);
    ItemOutput& o = call.out(j);
    if (s.prompt_index != lead.prompt_index || s.sample_index == 0 || o.submitted || o.finished) continue;
    if (call.client_gone()) {
      call.fail_item(j, Status::cancelled("the client went away"));
    } else if (failed) {
      call.fail_item(j, Status(lead_out.finish.abort_code, lead_out.finish.message));
    } else if (!engine_) {
      call.fail_item(j, Status::unavailable("the server is shutting down"));
    } else if (Status st = submit_item(live, j); !st.is_ok()) {
      call.fail_item(j, std::move(st));
    }
  }
}

void CallDispatcher::observe(const Live& live, size_t i, const engine::OutputChunk& chunk, double now) {
  if (!metrics_ || !live.record_metrics) return;
  const ItemOutput& o = live.call->out(i);  // before this chunk is folded in
  const int new_tokens = static_cast<int>(chunk.token_ids.size());
  if (new_tokens > 0) {
    if (o.first_token_at == 0) {
      metrics_->observe_time_to_first_token(now - live.call->spec(i).req.arrival_time);
      if (new_tokens > 1) metrics_->observe_inter_token(0, new_tokens - 1);
    } else {
      metrics_->observe_inter_token(now - o.last_token_at, new_tokens);
    }
  }
}

void CallDispatcher::on_deliveries(std::vector<Delivery>& batch) {
  const double now = steady_now();
  std::vector<uint64_t> touched;
  for (Delivery& d : batch) {
    auto it = calls_.find(d.call);
    if (it == calls_.end()) continue;  // an item of a call refused at start
    Live& live = it->second;
    ApiCall& call = *live.call;
    if (d.item >= call.size()) continue;
    observe(live, d.item, d.chunk, now);
    const bool was_first = call.out(d.item).ids.empty() && !call.out(d.item).finished;
    call.add_chunk(d.item, std::move(d.chunk), now);
    const ItemOutput& o = call.out(d.item);
    if (o.finished && metrics_ && live.record_metrics) {
      metrics_->observe_finished(o.prompt_tokens, o.completion_tokens, o.cached_tokens, o.e2e_latency,
                                 o.finish.type == engine::FinishInfo::Type::kAbort);
    }
    // The first output of a prompt's first sample releases its other samples.
    if (call.spec(d.item).sample_index == 0 && was_first && (!o.ids.empty() || o.finished)) {
      submit_followers(live, d.item);
    }
    if (touched.empty() || touched.back() != d.call) touched.push_back(d.call);
  }
  for (uint64_t id : touched) {
    auto it = calls_.find(id);
    if (it == calls_.end()) continue;
    it->second.call->flush();
    // A write found the connection closed (before on_close said so, or instead of it).
    if (it->second.call->client_gone()) abandon(it->second);
    retire_if_done(id);
  }
}

void CallDispatcher::retire_if_done(uint64_t call_id) {
  auto it = calls_.find(call_id);
  if (it == calls_.end()) return;
  ApiCall& call = *it->second.call;
  if (call.all_finished() && call.reply_done()) calls_.erase(it);
}

void CallDispatcher::on_client_gone(uint64_t call_id) {
  auto it = calls_.find(call_id);
  if (it == calls_.end()) return;
  if (it->second.call->reply_done() && !it->second.call->client_gone()) return;  // answered in full
  it->second.call->mark_client_gone();
  abandon(it->second);
  retire_if_done(call_id);
}

void CallDispatcher::abandon(Live& live) {
  if (live.abandoned) return;
  live.abandoned = true;
  ApiCall& call = *live.call;
  for (size_t i = 0; i < call.size(); ++i) {
    const ItemOutput& o = call.out(i);
    if (o.finished) continue;
    if (o.submitted) {
      if (engine_) engine_->abort(call.spec(i).req.rid, "the client disconnected");
    } else {
      call.fail_item(i, Status::cancelled("the client went away"));
    }
  }
}

void CallDispatcher::abort_rid(const std::string& rid) {
  if (!engine_) return;
  engine_->abort(rid, "aborted by /abort_request");
  const std::string prefix = rid + "-";
  for (auto& [id, live] : calls_) {
    ApiCall& call = *live.call;
    for (size_t i = 0; i < call.size(); ++i) {
      const std::string& r = call.spec(i).req.rid;
      if (r != rid && r.compare(0, prefix.size(), prefix) != 0) continue;
      const ItemOutput& o = call.out(i);
      if (o.finished) continue;
      if (o.submitted) {
        if (r != rid) engine_->abort(r, "aborted by /abort_request");
      } else {
        call.fail_item(i, Status::cancelled("aborted by /abort_request"));
      }
    }
  }
}

void CallDispatcher::abort_all() {
  if (!engine_) return;
  for (auto& [id, live] : calls_) {
    ApiCall& call = *live.call;
    for (size_t i = 0; i < call.size(); ++i) {
      const ItemOutput& o = call.out(i);
      if (o.finished) continue;
      if (o.submitted) {
        engine_->abort(call.spec(i).req.rid, "aborted by /abort_request");
      } else {
        call.fail_item(i, Status::cancelled("aborted by /abort_request"));
      }
    }
  }
}

namespace {

// /health_generate's call renders nothing: its completion hook answers.
class NoReply final : public ReplyFormat {
 public:
  void stream_events(ApiCall&, std::string&) override {}
  void stream_close(ApiCall&, std::string&) override {}
  std::string whole(const ApiCall&) override { return {}; }
};

}  // namespace

void CallDispatcher::health_generate(std::chrono::milliseconds timeout, std::function<void(bool)> done) {
  // `done` runs once: from the completion hook or from the timer, whichever is first.
  auto once = std::make_shared<std::function<void(bool)>>(std::move(done));
  auto finish = [once](bool ok) {
    if (*once) {
      auto fn = std::move(*once);
      *once = nullptr;
      fn(ok);
    }
  };
  ItemSpec item;
  item.req.rid = fmt::format("HEALTH_CHECK_{}_{}", ++health_seq_, static_cast<uint64_t>(steady_now() * 1e6));
  const engine::Tokenizer* tok = engine_ ? engine_->tokenizer() : nullptr;
  item.req.input_ids = {tok && tok->bos_id() >= 0 ? tok->bos_id() : 0};
  item.req.sampling.temperature = 0;
  item.req.sampling.max_new_tokens = 1;
  item.req.detokenize = tok != nullptr;
  item.req.arrival_time = steady_now();
  std::vector<ItemSpec> items;
  items.push_back(std::move(item));
  auto call = std::make_shared<ApiCall>(next_call_id(), net::Response(), std::move(items),
                                        std::make_unique<NoReply>(), /*stream=*/false);
  // The completion hook owns the timer: it lives until the call completes (destroying it
  // cancels it), or fires once if the engine never answers.
  auto timer = std::make_shared<net::Timer>(loop_);
  call->set_on_complete([finish, timer](ApiCall& c) {
    timer->cancel();
    finish(c.first_error().is_ok() && c.out(0).finish.type != engine::FinishInfo::Type::kAbort);
  });
  if (Status st = start(call, /*record_metrics=*/false); !st.is_ok()) {
    spdlog::warn("health_generate: {}", st.message());
    return finish(false);
  }
  const std::string rid = call->spec(0).req.rid;
  timer->start(timeout, [weak = weak_from_this(), finish, rid] {
    spdlog::error("health_generate: no token within the timeout");
    if (auto self = weak.lock(); self && self->engine_) self->engine_->abort(rid, "health check timed out");
    finish(false);
  });
}

}  // namespace pdctl::worker

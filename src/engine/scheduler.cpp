#include "engine/scheduler.h"

#include <algorithm>
#include <chrono>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace pdctl::engine {

Scheduler::Scheduler(ModelRunner& runner, const Tokenizer* tokenizer, const SchedulerOptions& options,
                     SchedulerMetrics& metrics, RetireFn on_retire, const policy::Tuning& tuning)
    : runner_(runner),
      pool_(runner.kv_pool()),
      tokenizer_(tokenizer),
      options_(options),
      metrics_(metrics),
      on_retire_(std::move(on_retire)),
      max_running_(policy::derived_max_running_requests(options.max_running_requests, runner.kv_pool().num_pages())),
      tuning_(tuning),
      ratio_(tuning) {
  // Generation ends at the tokenizer's EOS ids and the model's (with --skip-tokenizer-init
  // only the latter are known).
  if (tokenizer_ != nullptr) eos_ids_ = tokenizer_->eos_ids();
  for (int32_t id : runner.config().eos_token_ids) {
    if (std::find(eos_ids_.begin(), eos_ids_.end(), id) == eos_ids_.end()) eos_ids_.push_back(id);
  }
  if (!options_.disable_radix_cache) cache_ = std::make_unique<RadixCache>(pool_);
  publish();
}

Scheduler::~Scheduler() {
  for (auto& [_, r] : requests_) release_kv(*r, false);
  cache_.reset();
}

void Scheduler::add(std::unique_ptr<Request> r) {
  Request* p = r.get();
  const std::string& rid = p->req.rid;
  requests_.emplace(rid, std::move(r));
  waiting_.push_back(p);
}

void Scheduler::abort(const std::string& rid, const std::string& reason, Errc code) {
  auto it = requests_.find(rid);
  if (it == requests_.end()) return;
  FinishInfo f;
  f.type = FinishInfo::Type::kAbort;
  f.message = reason;
  f.abort_code = code;
  finish(*it->second, std::move(f), true);
}

void Scheduler::abort_all(const std::string& reason, Errc code) {
  std::vector<std::string> rids;
  rids.reserve(requests_.size());
  for (const Request* r : awaiting_) rids.push_back(r->req.rid);
  for (const Request* r : waiting_) rids.push_back(r->req.rid);
  for (const Request* r : running_) rids.push_back(r->req.rid);
  for (const std::string& rid : rids) abort(rid, reason, code);
}

void Scheduler::set_kv_hooks(KvHandoffHooks hooks) {
  kv_hooks_ = std::move(hooks);
  if (!kv_hooks_.on_layer_stored) return;
  layer_hook_ = [this](const StepBatch& batch, int layer) {
    for (const StepBatch::Entry& e : batch.entries()) {
      const Request& r = *e.request;
      if (!e.prefill || r.req.kv_handoff != GenerateRequest::KvHandoff::kSend) continue;
      kv_hooks_.on_layer_stored(r.req.rid, r.pages, layer, e.start + e.num_tokens);
    }
  };
}

void Scheduler::kv_arrived(const std::string& rid, int32_t first_token, float logprob) {
  auto it = requests_.find(rid);
  if (it == requests_.end() || !it->second->awaiting_kv) {
    spdlog::debug("KV arrived for request {}, which no longer waits for it", rid);
    return;
  }
  Request& r = *it->second;
  awaiting_.erase(std::find(awaiting_.begin(), awaiting_.end(), &r));
  r.awaiting_kv = false;
  r.kv_len = r.prompt_len;
  r.admit_seq = ++admit_counter_;
  running_.push_back(&r);
  append_token(r, first_token, logprob, {});
  publish();
}

void Scheduler::release_pages(std::span<const int32_t> pages) {
  if (Status st = pool_.release(pages); !st.is_ok()) spdlog::error("scheduler: {}", st.to_string());
  publish();
}

Status Scheduler::flush_cache() {
  if (!requests_.empty()) {
    return Status::unavailable(fmt::format("cannot flush the cache: {} requests are live", requests_.size()));
  }
  if (cache_ && !cache_->reset()) return Status::internal("the prefix cache is locked with no live request");
  publish();
  return Status::ok();
}

bool Scheduler::step() {
  if (waiting_.empty() && running_.empty()) return false;
  make_room_for_decodes();
  admit();
  build_batch();
  if (batch_.empty()) {
    publish();
    return false;
  }
  if (batch_.decode_tokens() > 0) ratio_.decay();

  LayerObserver observer;
  if (layer_hook_) observer = [this](int layer) { layer_hook_(batch_, layer); };
  const auto t0 = std::chrono::steady_clock::now();
  Status st = runner_.forward(batch_.inputs(), out_, observer);
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
  metrics_.forward_ns.fetch_add(static_cast<uint64_t>(ns), std::memory_order_relaxed);
  metrics_.forward_steps.fetch_add(1, std::memory_order_relaxed);
  if (!st.is_ok()) {
    // A bug or a broken backend: the batch's requests fail, the others go on. Their K/V
    // may be half written, so nothing of theirs is cached.
    spdlog::error("forward pass failed: {}", st.to_string());
    for (const StepBatch::Entry& e : batch_.entries()) {
      FinishInfo f;
      f.type = FinishInfo::Type::kAbort;
      f.message = "internal error: " + st.message();
      f.abort_code = Errc::kInternal;
      finish(*e.request, std::move(f), false);
    }
  } else {
    process_batch();
  }
  batch_.clear();  // its spans point into requests that may be gone
  publish();
  return true;
}

int Scheduler::available_pages() const {
  return pool_.free_pages() + static_cast<int>(cache_ ? cache_->evictable_pages() : 0);
}

bool Scheduler::allocate(int n, std::vector<int32_t>& pages) {
  if (n <= 0) return true;
  if (pool_.free_pages() < n && cache_) cache_->evict(n - pool_.free_pages());
  if (pool_.free_pages() < n) return false;
  auto got = pool_.allocate(n);
  if (!got.has_value()) return false;
  pages.insert(pages.end(), got->begin(), got->end());
  return true;
}

void Scheduler::make_room_for_decodes() {
  // Oldest first; the youngest gives way. The oldest request is never preempted while
  // another runs, and alone it always fits (submit() refuses what never could), so the
  // batch always makes progress.
  for (size_t i = 0; i < running_.size(); ++i) {
    Request* r = running_[i];
    if (!r->decoding()) continue;  // prefills got their pages at admission
    const int need = pool_.pages_for_tokens(r->kv_len + 1) - static_cast<int>(r->pages.size());
    while (!allocate(need, r->pages)) {
      Request* victim = running_.back();
      retract(*victim);
      if (victim == r) break;
    }
  }
}

int Scheduler::prefix_limit(const Request& r) const {
  // At least the last token is forwarded (its logits give the next token); with input
  // logprobs, every row from logprob_start_len - 1 on must be computed.
  int limit = static_cast<int>(r.fill.size()) - 1;
  if (r.wants_input_logprobs()) limit = std::min(limit, std::max(r.req.logprob_start_len - 1, 0));
  return limit;
}

void Scheduler::admit() {
  if (waiting_.empty()) return;
  const int ps = pool_.page_size();
  int64_t reserve = 0;
  for (const Request* r : running_) reserve += policy::reserve_tokens(r->remaining_new_tokens(), ratio_.value(), tuning_);
  while (!waiting_.empty() && static_cast<int>(running_.size() + awaiting_.size()) < max_running_) {
    Request& r = *waiting_.front();
    const bool receive = r.req.kv_handoff == GenerateRequest::KvHandoff::kReceive;
    RadixCache::Match m;
    // A request whose KV comes from prefill takes fresh pages for all of it.
    if (cache_ && !receive) m = cache_->match(std::span<const int32_t>(r.fill).first(static_cast<size_t>(prefix_limit(r))));
    const int need = pool_.pages_for_tokens(static_cast<int64_t>(r.fill.size())) - static_cast<int>(m.pages.size());
    const int avail = available_pages();  // after the match locked its pages
    const int64_t own_reserve = policy::reserve_tokens(r.remaining_new_tokens(), ratio_.value(), tuning_);
    bool fits = need <= avail;
    if (fits && !running_.empty()) fits = static_cast<int64_t>(need) * ps + reserve + own_reserve <= int64_t{avail} * ps;
    std::vector<int32_t> fresh;
    if (fits) fits = allocate(need, fresh);
    if (!fits) {
      if (cache_) {
        cache_->unlock(m.node);
        if (Status st = pool_.release(m.pages); !st.is_ok()) spdlog::error("scheduler: {}", st.to_string());
      }
      // FCFS: the head waits for memory, the rest behind it.
      if (!running_.empty() || !awaiting_.empty()) break;
      // Nothing runs and it still does not fit: it never will (submit() should have said so).
      FinishInfo f;
      f.type = FinishInfo::Type::kAbort;
      f.message = fmt::format("the request needs {} KV pages, only {} can be free", need, avail);
      f.abort_code = Errc::kResourceExhausted;
      finish(r, std::move(f), false);
      continue;
    }
    waiting_.pop_front();
    metrics_.queued.fetch_sub(1, std::memory_order_relaxed);
    r.pages = std::move(m.pages);
    r.pages.insert(r.pages.end(), fresh.begin(), fresh.end());
    r.cache_node = m.node;
    r.kv_len = static_cast<int>(r.pages.size() - fresh.size()) * ps;
    metrics_.cache_query_tokens.fetch_add(r.fill.size(), std::memory_order_relaxed);
    metrics_.cache_hit_tokens.fetch_add(static_cast<uint64_t>(r.kv_len), std::memory_order_relaxed);
    if (!r.admitted_once) {
      r.admitted_once = true;
      r.cached_tokens = std::min(r.kv_len, r.prompt_len);
      metrics_.prompt_tokens.fetch_add(static_cast<uint64_t>(r.prompt_len), std::memory_order_relaxed);
    }
    if (r.wants_input_logprobs()) {
      const int start = r.req.logprob_start_len;
      r.input_logprobs.assign(static_cast<size_t>(r.prompt_len - start), TokenLogprobInfo{});
      for (int i = start; i < r.prompt_len; ++i) r.input_logprobs[static_cast<size_t>(i - start)].token = r.fill[static_cast<size_t>(i)];
      // The first prompt token has no logprob (0 here, null in SGLang's API).
    }
    reserve += own_reserve;
    if (receive) {
      // The transfer side holds one more reference on each page until no remote write can
      // land in it any more.
      for (int32_t p : r.pages) (void)pool_.ref(p);
      r.awaiting_kv = true;
      awaiting_.push_back(&r);
      if (kv_hooks_.on_kv_reserved) kv_hooks_.on_kv_reserved(r.req.rid, r.pages);
      continue;
    }
    r.admit_seq = ++admit_counter_;
    running_.push_back(&r);
  }
}

void Scheduler::build_batch() {
  batch_.clear();
  int budget = options_.max_prefill_tokens;
  bool first_prefill = true, prefill_closed = false;
  for (Request* r : running_) {
    if (r->decoding()) {
      batch_.add(*r, 1, false, false);
      continue;
    }
    if (prefill_closed) continue;
    const int n = policy::prefill_chunk(r->uncomputed(), options_.chunked_prefill_size, budget, first_prefill);
    if (n <= 0) {  // FCFS: no later prompt overtakes this one; decodes further on still join
      prefill_closed = true;
      continue;
    }
    bool all_logits = false;
    if (r->wants_input_logprobs()) {
      // Rows of positions [logprob_start_len - 1, prompt_len - 2] give input logprobs.
      const int lo = std::max(r->req.logprob_start_len - 1, 0), hi = r->prompt_len - 2;
      all_logits = r->kv_len <= hi && r->kv_len + n - 1 >= lo;
    }
    batch_.add(*r, n, all_logits, true);
    budget -= n;
    first_prefill = false;
  }
}

void Scheduler::process_batch() {
  const auto& entries = batch_.entries();
  for (size_t b = 0; b < entries.size(); ++b) {
    const StepBatch::Entry& e = entries[b];
    Request& r = *e.request;
    if (e.prefill && r.wants_input_logprobs()) collect_input_logprobs(r, e, out_, b, logprobs_);
    r.kv_len += e.num_tokens;
    // A request whose KV is being sent keeps its own pages until it finishes: caching a
    // chunk could swap a page for the tree's copy and free it under an in-flight write.
    if (e.prefill && r.req.kv_handoff != GenerateRequest::KvHandoff::kSend) cache_prefix(r, e.start);
    if (r.uncomputed() > 0) continue;  // the prompt goes on next step
    if (r.wants_input_logprobs()) {
      r.out.input_logprobs = std::move(r.input_logprobs);
      r.input_logprobs_sent = true;
    }
    if (r.remaining_new_tokens() <= 0) {  // max_new_tokens 0: the prompt (and its logprobs) only
      FinishInfo f;
      f.type = FinishInfo::Type::kLength;
      finish(r, std::move(f), true);
      continue;
    }
    sample(r, out_.last(b));
  }
}

void Scheduler::sample(Request& r, std::span<const float> logits) {
  SampleResult s = sampler_.sample(logits, r.req.sampling, r.sampler);
  append_token(r, s.token, s.logprob, std::move(s.top_logprobs));
}

void Scheduler::append_token(Request& r, int32_t token, float logprob, std::vector<TokenLogprob> top) {
  const SamplingParams& p = r.req.sampling;
  r.sampler.accept(token);
  r.fill.push_back(token);
  r.out.token_ids.push_back(token);
  if (p.return_logprob) r.out.logprobs.push_back({token, logprob, std::move(top)});
  metrics_.generated_tokens.fetch_add(1, std::memory_order_relaxed);

  // Stop token (EOS unless ignore_eos, or stop_token_ids) first, then stop strings, then
  // the length. A stop token's own text is not part of the output unless no_stop_trim
  // (SGLang decodes the output without the matched token).
  const FinishReason reason = check_finish(token, r.output_len(), p, eos_ids_);
  FinishInfo f;
  if (reason == FinishReason::kStopToken) {
    if (r.req.no_stop_trim) (void)r.text.push(token, r.out.text);
    r.text.finish(r.out.text);
    f.type = FinishInfo::Type::kStop;
    f.matched = token;
    finish(r, std::move(f), true);
    return;
  }
  if (auto m = r.text.push(token, r.out.text)) {
    f.type = FinishInfo::Type::kStop;
    f.matched = r.text.stop()[*m];
    finish(r, std::move(f), true);
    return;
  }
  if (reason == FinishReason::kLength) {
    r.text.finish(r.out.text);
    f.type = FinishInfo::Type::kLength;
    finish(r, std::move(f), true);
    return;
  }
  emit(r);
}

void Scheduler::cache_prefix(Request& r, int32_t chunk_start) {
  // Only when this chunk completed a page: earlier pages are in the tree already.
  const int ps = pool_.page_size();
  if (!cache_ || r.kv_len / ps == chunk_start / ps) return;
  RadixCache::Node* node =
      cache_->insert(std::span<const int32_t>(r.fill).first(static_cast<size_t>(r.kv_len)), r.pages);
  if (node == nullptr) return;
  cache_->lock(node);  // before unlocking the old path, which may be part of the new one
  cache_->unlock(r.cache_node);
  r.cache_node = node;
}

void Scheduler::release_kv(Request& r, bool cache) {
  if (cache_) {
    if (cache && r.kv_len >= pool_.page_size()) {
      (void)cache_->insert(std::span<const int32_t>(r.fill).first(static_cast<size_t>(r.kv_len)), r.pages);
    }
    cache_->unlock(r.cache_node);
  }
  r.cache_node = nullptr;
  if (Status st = pool_.release(r.pages); !st.is_ok()) spdlog::error("scheduler: {}", st.to_string());
  r.pages.clear();
  r.kv_len = 0;
}

void Scheduler::retract(Request& r) {
  spdlog::debug("KV pool full: preempting request {} in {} ({} of {} tokens computed, {} generated)", r.req.rid,
                r.decoding() ? "decode" : "prefill", r.kv_len, r.fill.size(), r.output_len());
  // Its computed pages go to the prefix cache, evictable: if memory allows, its resumption
  // finds them there instead of recomputing.
  release_kv(r, true);
  running_.erase(std::find(running_.begin(), running_.end(), &r));
  r.admit_seq = 0;
  // Its prompt's K/V came from prefill once; now it recomputes here like any request.
  if (r.req.kv_handoff == GenerateRequest::KvHandoff::kReceive) r.req.kv_handoff = GenerateRequest::KvHandoff::kNone;
  if (!r.input_logprobs_sent) r.input_logprobs.clear();
  waiting_.push_front(&r);
  metrics_.queued.fetch_add(1, std::memory_order_relaxed);
  metrics_.requests_retracted.fetch_add(1, std::memory_order_relaxed);
  ratio_.on_retract();
}

void Scheduler::finish(Request& r, FinishInfo info, bool cache) {
  if (r.req.kv_handoff == GenerateRequest::KvHandoff::kSend && !r.pages.empty()) {
    // Transfers may still read these pages: the chunk's receiver owns one reference each.
    for (int32_t p : r.pages) (void)pool_.ref(p);
    r.out.held_pages = r.pages;
  }
  const bool awaiting = r.awaiting_kv;
  release_kv(r, cache && !awaiting);
  if (awaiting) {
    awaiting_.erase(std::find(awaiting_.begin(), awaiting_.end(), &r));
    r.awaiting_kv = false;
  } else if (r.admit_seq != 0) {
    running_.erase(std::find(running_.begin(), running_.end(), &r));
  } else {
    waiting_.erase(std::find(waiting_.begin(), waiting_.end(), &r));
    metrics_.queued.fetch_sub(1, std::memory_order_relaxed);
  }
  const bool aborted = info.type == FinishInfo::Type::kAbort;
  (aborted ? metrics_.requests_aborted : metrics_.requests_finished).fetch_add(1, std::memory_order_relaxed);
  r.out.finished = true;
  r.out.finish = std::move(info);
  publish();  // the pages are back before the client hears of it
  std::unique_ptr<Request> owned = std::move(requests_.at(r.req.rid));
  requests_.erase(r.req.rid);
  if (on_retire_) on_retire_(r.req.rid);
  emit(r);
}

void Scheduler::emit(Request& r) {
  OutputChunk& c = r.out;
  c.prompt_tokens = r.prompt_len;
  c.cached_tokens = r.cached_tokens;
  c.completion_tokens = r.output_len();
  if (r.sink) r.sink(std::move(c));
  c = OutputChunk{};
}

void Scheduler::publish() {
  const int64_t ps = pool_.page_size();
  const int64_t evictable = cache_ ? cache_->evictable_pages() : 0;
  const int64_t used = pool_.num_pages() - pool_.free_pages() - evictable;
  metrics_.running.store(static_cast<int>(running_.size()), std::memory_order_relaxed);
  metrics_.awaiting_kv.store(static_cast<int>(awaiting_.size()), std::memory_order_relaxed);
  metrics_.tokens_in_use.store(used * ps, std::memory_order_relaxed);
  metrics_.cached_tokens.store(evictable * ps, std::memory_order_relaxed);
}

}  // namespace pdctl::engine

#pragma once
// A test double of engine::EngineService for the worker API's tests: deterministic
// output, controllable timing (its own stepping thread, or steps driven by the test),
// injected submit errors and engine-side aborts, and a record of what it was asked.
//
// Output of a request: token k is 3 + 'a' + (h + k) % 26 with h from the prompt and, unless
// greedy (temperature 0 or top_k 1, as the real sampler), the seed, so with the byte-level tokenizer the text is lowercase letters; a `script` can
// replace it (to produce EOS, stop strings, multi-byte characters...). Stop strings,
// stop ids, EOS, max_new_tokens and the incremental detokenizer behave as the engine's
// contract says (OutputChunk): text held back while it may become a stop string, stop
// strings trimmed unless no_stop_trim, exactly one final chunk.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine_service.h"
#include "engine/tokenizer.h"

namespace workertest {

using namespace pdctl;

struct FakeEngineOptions {
  int64_t vocab_size = 512;
  int64_t context_length = 256;
  std::optional<engine::Tokenizer> tokenizer = engine::Tokenizer::byte_level();
  bool manual = false;                             // steps only when the test calls step()
  std::chrono::milliseconds step_delay{0};         // auto mode: pause before each step
  int tokens_per_chunk = 1;
  // The full output a request would produce (before the stop rules), instead of letters.
  std::function<std::vector<int32_t>(const engine::GenerateRequest&)> script;
};

// Shorthands (designated initializers would warn about the fields left out).
inline FakeEngineOptions manual_engine() {
  FakeEngineOptions o;
  o.manual = true;
  return o;
}
inline FakeEngineOptions paced_engine(std::chrono::milliseconds step_delay, int64_t context_length = 256) {
  FakeEngineOptions o;
  o.step_delay = step_delay;
  o.context_length = context_length;
  return o;
}
inline FakeEngineOptions engine_without_tokenizer() {
  FakeEngineOptions o;
  o.tokenizer = std::nullopt;
  return o;
}

class FakeEngine final : public engine::EngineService {
 public:
  explicit FakeEngine(FakeEngineOptions o = {}) : o_(std::move(o)) {
    config_.vocab_size = o_.vocab_size;
    config_.context_length = o_.context_length;
    config_.num_layers = 1;
    config_.hidden_size = 8;
    if (!o_.manual) thread_ = std::thread([this] { run(); });
  }
  ~FakeEngine() override { shutdown(); }

  // ------------------------------------------------------------ EngineService
  Status submit(engine::GenerateRequest r, engine::OutputSink sink) override {
    std::lock_guard lock(mu_);
    if (stopped_) return Status::unavailable("the engine is shutting down");
    if (!fail_next_.is_ok()) {
      Status st = std::move(fail_next_);
      fail_next_ = Status::ok();
      return st;
    }
    PDCTL_RETURN_IF_ERROR(r.sampling.validate(o_.vocab_size));
    if (static_cast<int64_t>(r.input_ids.size()) + r.sampling.max_new_tokens > o_.context_length) {
      return Status::out_of_range("prompt plus max_new_tokens exceed the context");
    }
    for (const Req& q : live_) {
      if (q.req.rid == r.rid) return Status::already_exists("duplicate rid " + r.rid);
    }
    submitted_.push_back(r);
    Req q;
    q.cached = cached_prefix(r.input_ids);
    seen_prompts_.push_back(r.input_ids);
    q.output = plan(r);
    if (r.detokenize && o_.tokenizer) q.decoder.emplace(o_.tokenizer->incremental_decoder(r.skip_special_tokens));
    q.req = std::move(r);
    q.sink = std::move(sink);
    live_.push_back(std::move(q));
    cv_.notify_all();
    return Status::ok();
  }

  void abort(const std::string& rid, std::string reason) override {
    std::lock_guard lock(mu_);
    aborted_.push_back(rid);
    for (Req& q : live_) {
      if (q.req.rid == rid && !q.abort) {
        q.abort = true;
        q.abort_code = Errc::kCancelled;
        q.abort_message = std::move(reason);
      }
    }
    cv_.notify_all();
  }

  void flush_cache(std::function<void(Status)> done) override {
    Status st;
    {
      std::lock_guard lock(mu_);
      if (!live_.empty()) {
        st = Status::unavailable("requests are running");
      } else {
        seen_prompts_.clear();
        ++flushes_;
      }
    }
    done(st);
  }

  engine::EngineLoad load() const override {
    std::lock_guard lock(mu_);
    engine::EngineLoad l;
    l.running_requests = static_cast<int>(live_.size());
    for (const Req& q : live_) l.tokens_in_use += static_cast<int64_t>(q.req.input_ids.size() + q.produced);
    l.total_tokens = 4096;
    return l;
  }
  engine::EngineCounters counters() const override {
    std::lock_guard lock(mu_);
    return counters_;
  }
  const engine::ModelConfig& model_config() const override { return config_; }
  int64_t context_length() const override { return o_.context_length; }
  const engine::Tokenizer* tokenizer() const override { return o_.tokenizer ? &*o_.tokenizer : nullptr; }

  void shutdown() override {
    std::vector<std::pair<engine::OutputSink, engine::OutputChunk>> out;
    {
      std::lock_guard lock(mu_);
      if (stopped_) return;
      stopped_ = true;
      cv_.notify_all();
    }
    if (thread_.joinable()) thread_.join();
    std::lock_guard lock(mu_);
    for (Req& q : live_) {
      engine::OutputChunk c;
      c.finished = true;
      c.finish.type = engine::FinishInfo::Type::kAbort;
      c.finish.abort_code = Errc::kUnavailable;
      c.finish.message = "the engine is shutting down";
      c.completion_tokens = static_cast<int>(q.produced);
      q.sink(std::move(c));
    }
    live_.clear();
  }

  // ------------------------------------------------------------ test controls
  // Manual mode: one step of every live request, on the calling thread. Returns the number
  // of requests still live.
  size_t step() {
    std::unique_lock lock(mu_);
    step_locked(lock);
    return live_.size();
  }
  // Manual mode: steps until nothing is live (at most `max_steps`).
  void run_to_completion(int max_steps = 100000) {
    for (int i = 0; i < max_steps && step() > 0; ++i) {
    }
  }
  void fail_next_submit(Status st) {
    std::lock_guard lock(mu_);
    fail_next_ = std::move(st);
  }
  // The next step ends request `rid` with an engine error (before or after its output).
  void fail_request(const std::string& rid, Status st) {
    std::lock_guard lock(mu_);
    for (Req& q : live_) {
      if (q.req.rid == rid) {
        q.abort = true;
        q.abort_code = st.code();
        q.abort_message = st.message();
      }
    }
    cv_.notify_all();
  }
  // Auto mode: hold the stepping thread (requests stay live) until resumed.
  void hold(bool on) {
    std::lock_guard lock(mu_);
    held_ = on;
    cv_.notify_all();
  }
  size_t live() const {
    std::lock_guard lock(mu_);
    return live_.size();
  }
  std::vector<engine::GenerateRequest> submitted() const {
    std::lock_guard lock(mu_);
    return submitted_;
  }
  std::vector<std::string> aborted() const {
    std::lock_guard lock(mu_);
    return aborted_;
  }
  int flushes() const {
    std::lock_guard lock(mu_);
    return flushes_;
  }
  // Waits (bounded) until `pred()` holds under the engine's lock.
  bool wait_for(const std::function<bool()>& pred, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      if (pred()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return pred();
  }

  // The letters a request of this prompt and seed produces (without stop rules).
  static std::vector<int32_t> letters(const engine::GenerateRequest& r, int count) {
    const bool greedy = r.sampling.temperature == 0 || r.sampling.top_k == 1;
    uint64_t h = greedy ? 0 : r.sampling.seed.value_or(0);
    for (int32_t id : r.input_ids) h = h * 31 + static_cast<uint64_t>(id);
    std::vector<int32_t> out;
    for (int k = 0; k < count; ++k) out.push_back(3 + 'a' + static_cast<int32_t>((h + static_cast<uint64_t>(k)) % 26));
    return out;
  }

 private:
  struct Req {
    engine::GenerateRequest req;
    engine::OutputSink sink;
    std::vector<int32_t> output;
    std::optional<engine::IncrementalDecoder> decoder;
    size_t produced = 0;
    int cached = 0;
    std::string full_text;   // everything decoded so far
    size_t emitted = 0;      // bytes of full_text sent
    bool abort = false;
    Errc abort_code = Errc::kCancelled;
    std::string abort_message;
  };

  std::vector<int32_t> plan(const engine::GenerateRequest& r) const {
    if (o_.script) return o_.script(r);
    return letters(r, r.sampling.max_new_tokens);
  }

  int cached_prefix(const std::vector<int32_t>& ids) const {
    size_t best = 0;
    for (const auto& p : seen_prompts_) {
      size_t n = 0;
      while (n < p.size() && n < ids.size() && p[n] == ids[n]) ++n;
      best = std::max(best, n);
    }
    return static_cast<int>(std::min(best, ids.empty() ? 0 : ids.size() - 1));
  }

  bool is_stop_token(const Req& q, int32_t t) const {
    const auto& stops = q.req.sampling.stop_token_ids;
    if (std::find(stops.begin(), stops.end(), t) != stops.end()) return true;
    return !q.req.sampling.ignore_eos && o_.tokenizer && o_.tokenizer->is_eos(t);
  }

  // One chunk of `q` (its final one when it finishes).
  engine::OutputChunk advance(Req& q) {
    engine::OutputChunk c;
    if (q.produced == 0) {
      c.prompt_tokens = static_cast<int>(q.req.input_ids.size());
      c.cached_tokens = q.cached;
      if (q.req.logprob_start_len >= 0) {
        for (size_t p = static_cast<size_t>(q.req.logprob_start_len); p < q.req.input_ids.size(); ++p) {
          c.input_logprobs.push_back({q.req.input_ids[p], p == 0 ? 0.0f : -1.0f, {}});
        }
      }
    }
    if (q.abort) {
      c.finished = true;
      c.finish.type = engine::FinishInfo::Type::kAbort;
      c.finish.abort_code = q.abort_code;
      c.finish.message = q.abort_message;
      c.completion_tokens = static_cast<int>(q.produced);
      return c;
    }
    for (int n = 0; n < o_.tokens_per_chunk && !c.finished; ++n) {
      if (static_cast<int>(q.produced) >= q.req.sampling.max_new_tokens || q.produced >= q.output.size()) {
        c.finished = true;
        c.finish.type = engine::FinishInfo::Type::kLength;
        break;
      }
      const int32_t t = q.output[q.produced++];
      c.token_ids.push_back(t);
      ++counters_.generated_tokens;
      if (q.req.sampling.return_logprob) {
        engine::TokenLogprobInfo lp{t, -0.5f - 0.01f * static_cast<float>(q.produced), {}};
        for (int k = 0; k < q.req.sampling.top_logprobs_num; ++k) {
          lp.top.push_back({k == 0 ? t : t + k, -0.5f - 0.1f * static_cast<float>(k)});
        }
        c.logprobs.push_back(std::move(lp));
      }
      if (is_stop_token(q, t)) {
        c.finished = true;
        c.finish.type = engine::FinishInfo::Type::kStop;
        c.finish.matched = t;
        break;
      }
      if (q.decoder) q.full_text += q.decoder->push(t);
      if (stop_string(q, c)) break;
      if (static_cast<int>(q.produced) >= q.req.sampling.max_new_tokens) {
        c.finished = true;
        c.finish.type = engine::FinishInfo::Type::kLength;
      }
    }
    if (c.finished && q.decoder && c.finish.type != engine::FinishInfo::Type::kStop) q.full_text += q.decoder->finish();
    if (!(c.finished && c.finish.type == engine::FinishInfo::Type::kStop &&
          std::holds_alternative<std::string>(c.finish.matched))) {
      // Hold back a tail that may still become a stop string.
      size_t keep = 0;
      if (!c.finished) {
        for (const std::string& s : q.req.stop) {
          for (size_t k = std::min(s.size() - 1, q.full_text.size() - q.emitted); k > keep; --k) {
            if (q.full_text.compare(q.full_text.size() - k, k, s, 0, k) == 0) {
              keep = k;
              break;
            }
          }
        }
      }
      const size_t upto = q.full_text.size() - keep;
      c.text += q.full_text.substr(q.emitted, upto - q.emitted);
      q.emitted = upto;
    }
    c.completion_tokens = static_cast<int>(q.produced);
    return c;
  }

  // Ends `c` when the text now holds a stop string; sets c.text to the rest before it.
  bool stop_string(Req& q, engine::OutputChunk& c) {
    for (const std::string& s : q.req.stop) {
      size_t pos = q.full_text.find(s, q.emitted >= s.size() ? q.emitted - s.size() + 1 : 0);
      if (pos == std::string::npos || pos + s.size() <= q.emitted) continue;
      const size_t end = q.req.no_stop_trim ? pos + s.size() : pos;
      if (end > q.emitted) c.text += q.full_text.substr(q.emitted, end - q.emitted);
      q.emitted = std::max(q.emitted, end);
      c.finished = true;
      c.finish.type = engine::FinishInfo::Type::kStop;
      c.finish.matched = s;
      return true;
    }
    return false;
  }

  void step_locked(std::unique_lock<std::mutex>& lock) {
    std::vector<std::pair<engine::OutputSink, engine::OutputChunk>> out;
    ++counters_.forward_steps;
    counters_.forward_seconds += 0.001;
    for (auto it = live_.begin(); it != live_.end();) {
      engine::OutputChunk c = advance(*it);
      const bool fin = c.finished;
      if (fin) {
        ++counters_.requests_finished;
        counters_.prompt_tokens += it->req.input_ids.size();
        out.emplace_back(std::move(it->sink), std::move(c));
        it = live_.erase(it);
      } else {
        out.emplace_back(it->sink, std::move(c));
        ++it;
      }
    }
    // Sinks run without the lock, as on the engine thread.
    lock.unlock();
    for (auto& [sink, chunk] : out) sink(std::move(chunk));
    lock.lock();
  }

  void run() {
    std::unique_lock lock(mu_);
    while (!stopped_) {
      cv_.wait(lock, [&] { return stopped_ || (!live_.empty() && !held_); });
      if (stopped_) break;
      if (o_.step_delay.count() > 0) {
        cv_.wait_for(lock, o_.step_delay, [&] { return stopped_; });
        if (stopped_ || held_) continue;
      }
      step_locked(lock);
    }
  }

  FakeEngineOptions o_;
  engine::ModelConfig config_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Req> live_;
  std::vector<engine::GenerateRequest> submitted_;
  std::vector<std::string> aborted_;
  std::vector<std::vector<int32_t>> seen_prompts_;
  engine::EngineCounters counters_;
  Status fail_next_;
  bool stopped_ = false;
  bool held_ = false;
  int flushes_ = 0;
  std::thread thread_;
};

}  // namespace workertest

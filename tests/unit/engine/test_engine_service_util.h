#pragma once
// Helpers for the EngineService tests: an engine on stories260K, a sink that collects each
// request's chunks, the golden rows. Waits are bounded: a hang fails the test instead.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>

#include <nlohmann/json.hpp>

#include "engine/engine_service.h"
#include "engine/model_runner.h"
#include "engine_test_util.h"

namespace pdctl::engine::test {

inline constexpr auto kWait = std::chrono::seconds(120);

struct GoldenRow {
  std::string prompt, text;
  std::vector<int32_t> prompt_tokens, completion;
};

inline bool have_stories() {
  if (have_shared("golden/stories260K_greedy.json") && have_shared("models/stories260K.gguf") &&
      have_shared("models/stories260K-hf/model.safetensors")) {
    return true;
  }
  MESSAGE("skipped: stories260K model or golden file absent under " << PDCTL_SHARED_DIR);
  return false;
}

inline const std::vector<GoldenRow>& golden_rows() {
  static const std::vector<GoldenRow> rows = [] {
    std::vector<GoldenRow> out;
    std::ifstream in(shared_path("golden/stories260K_greedy.json"));
    for (const auto& j : nlohmann::json::parse(in)) {
      out.push_back({j["prompt"].get<std::string>(), j["text"].get<std::string>(),
                     j["prompt_tokens"].get<std::vector<int32_t>>(), j["completion_tokens"].get<std::vector<int32_t>>()});
    }
    return out;
  }();
  return rows;
}

struct EngineSetup {
  std::string model = "models/stories260K.gguf";
  bool tokenizer = true;  // from the GGUF; the HF directory has none
  int page_size = 16;
  int64_t max_total_tokens = 4096;
  SchedulerOptions options;
  // More ids that end generation (stories260K never generates its EOS: llama2.c's stories
  // end with BOS).
  std::vector<int32_t> extra_eos;
};

inline std::unique_ptr<EngineService> start_engine(const EngineSetup& s) {
  EngineOptions o;
  o.model_path = shared_path(s.model);
  o.threads = 1;
  o.page_size = s.page_size;
  o.max_total_tokens = s.max_total_tokens;
  auto runner = ModelRunner::create(o);
  REQUIRE_MESSAGE(runner.has_value(), runner.status().to_string());
  std::optional<Tokenizer> tok;
  if (s.tokenizer) {
    auto t = Tokenizer::load(shared_path(s.model));
    REQUIRE_MESSAGE(t.has_value(), t.status().to_string());
    tok = std::move(t).value();
    tok->add_eos_ids(s.extra_eos);
  }
  auto e = EngineService::start(std::move(runner).value(), std::move(tok), s.options);
  REQUIRE_MESSAGE(e.has_value(), e.status().to_string());
  return std::move(e).value();
}

// Everything one request received.
struct Collected {
  std::vector<int32_t> tokens;
  std::string text;
  std::vector<std::string> text_chunks;
  std::vector<TokenLogprobInfo> logprobs, input_logprobs;
  int chunks = 0, finished_chunks = 0, chunks_after_finish = 0;
  int prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;
  bool finished = false;
  FinishInfo finish;
};

class Collector {
 public:
  // `on_chunk` (optional) runs on the engine thread after the chunk is recorded.
  OutputSink sink(const std::string& rid, std::function<void(const OutputChunk&)> on_chunk = {}) {
    return [this, rid, on_chunk](OutputChunk&& c) {
      {
        std::lock_guard lk(mu_);
        Collected& r = results_[rid];
        if (r.finished) ++r.chunks_after_finish;
        ++r.chunks;
        r.tokens.insert(r.tokens.end(), c.token_ids.begin(), c.token_ids.end());
        r.text += c.text;
        r.text_chunks.push_back(c.text);
        r.logprobs.insert(r.logprobs.end(), c.logprobs.begin(), c.logprobs.end());
        if (!c.input_logprobs.empty()) r.input_logprobs = c.input_logprobs;
        r.prompt_tokens = c.prompt_tokens;
        r.cached_tokens = c.cached_tokens;
        r.completion_tokens = c.completion_tokens;
        if (c.finished) {
          r.finished = true;
          ++r.finished_chunks;
          r.finish = c.finish;
        }
      }
      cv_.notify_all();
      if (on_chunk) on_chunk(c);
    };
  }
  bool wait(const std::vector<std::string>& rids) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, kWait, [&] {
      for (const auto& rid : rids) {
        auto it = results_.find(rid);
        if (it == results_.end() || !it->second.finished) return false;
      }
      return true;
    });
  }
  bool wait(const std::string& rid) { return wait(std::vector<std::string>{rid}); }
  Collected get(const std::string& rid) {
    std::lock_guard lk(mu_);
    return results_[rid];
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Collected> results_;
};

// "prefix" + i, spelled so that GCC 12 does not warn (a false -Wrestrict on "x" + to_string()).
inline std::string rid_of(const std::string& prefix, int i) {
  std::string s = prefix;
  s += std::to_string(i);
  return s;
}

inline GenerateRequest greedy_request(const std::string& rid, const std::vector<int32_t>& prompt, int max_new_tokens = 64) {
  GenerateRequest r;
  r.rid = rid;
  r.input_ids = prompt;
  r.sampling.temperature = 0;
  r.sampling.max_new_tokens = max_new_tokens;
  return r;
}

inline void submit_ok(EngineService& e, GenerateRequest r, OutputSink sink) {
  Status st = e.submit(std::move(r), std::move(sink));
  REQUIRE_MESSAGE(st.is_ok(), st.to_string());
}

// A one-shot gate with a bounded wait (a sink that holds the engine thread until released).
class Gate {
 public:
  void open() {
    {
      std::lock_guard lk(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }
  bool wait() {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, kWait, [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

}  // namespace pdctl::engine::test

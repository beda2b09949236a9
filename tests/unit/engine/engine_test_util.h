#pragma once
// Helpers shared by the engine tests: greedy generation through ModelRunner with any
// chunking and batching, and the location of the reference data.
#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/model_runner.h"

namespace pdctl::engine::test {

inline std::string shared_path(const std::string& rel) { return std::string(PDCTL_SHARED_DIR) + "/" + rel; }
inline bool have_shared(const std::string& rel) { return std::filesystem::exists(shared_path(rel)); }

inline int32_t argmax(std::span<const float> v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());  // first of equal maxima
}

struct GenerateOptions {
  int max_new_tokens = 16;
  int chunk = 0;          // prompt tokens per step and sequence; 0: the whole prompt
  bool together = true;   // all prompts in one batch, else one after another
};

// Greedy tokens for each prompt. Pages are allocated up front and released at the end.
inline std::vector<std::vector<int32_t>> greedy(ModelRunner& r, const std::vector<std::vector<int32_t>>& prompts,
                                                const GenerateOptions& o, std::vector<std::vector<float>>* first_logits = nullptr) {
  std::vector<std::vector<int32_t>> outs(prompts.size());
  auto run = [&](const std::vector<size_t>& which) {
    kv::KvPool& pool = r.kv_pool();
    std::vector<std::vector<int32_t>> pages(which.size());
    std::vector<int32_t> pos(which.size(), 0);
    for (size_t i = 0; i < which.size(); ++i) {
      auto p = pool.allocate(pool.pages_for_tokens(static_cast<int64_t>(prompts[which[i]].size()) + o.max_new_tokens));
      REQUIRE_MESSAGE(p.has_value(), p.status().to_string());
      pages[i] = *p;
    }
    for (;;) {
      std::vector<SequenceInput> batch;
      std::vector<size_t> members;
      for (size_t i = 0; i < which.size(); ++i) {
        const auto& prompt = prompts[which[i]];
        auto& out = outs[which[i]];
        if (static_cast<int>(out.size()) >= o.max_new_tokens) continue;
        SequenceInput s;
        s.start_pos = pos[i];
        s.page_table = pages[i];
        if (pos[i] < static_cast<int32_t>(prompt.size())) {
          const size_t n = o.chunk > 0 ? std::min<size_t>(o.chunk, prompt.size() - pos[i]) : prompt.size() - pos[i];
          s.tokens = std::span<const int32_t>(prompt).subspan(pos[i], n);
        } else {
          s.tokens = std::span<const int32_t>(out).subspan(out.size() - 1, 1);
        }
        batch.push_back(s);
        members.push_back(i);
      }
      if (batch.empty()) break;
      ForwardOutput fo;
      Status st = r.forward(batch, fo);
      REQUIRE_MESSAGE(st.is_ok(), st.to_string());
      for (size_t b = 0; b < batch.size(); ++b) {
        const size_t i = members[b];
        pos[i] += static_cast<int32_t>(batch[b].tokens.size());
        if (pos[i] >= static_cast<int32_t>(prompts[which[i]].size())) {
          if (first_logits && outs[which[i]].empty()) {
            auto l = fo.last(b);
            (*first_logits)[which[i]].assign(l.begin(), l.end());
          }
          outs[which[i]].push_back(argmax(fo.last(b)));
        }
      }
    }
    for (auto& p : pages) CHECK(pool.release(p).is_ok());
  };
  if (first_logits) first_logits->assign(prompts.size(), {});
  if (o.together) {
    std::vector<size_t> all(prompts.size());
    for (size_t i = 0; i < all.size(); ++i) all[i] = i;
    run(all);
  } else {
    for (size_t i = 0; i < prompts.size(); ++i) run({i});
  }
  return outs;
}

}  // namespace pdctl::engine::test

#include <unistd.h>

namespace pdctl::engine::test {

// A fresh directory under the system temp dir, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("pdctl-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline std::unique_ptr<ModelRunner> runner_for(LoadedModel m, int threads = 1) {
  EngineOptions o;
  o.threads = threads;
  o.max_total_tokens = 2048;
  o.page_size = 8;
  auto r = ModelRunner::create(std::move(m), o);
  REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
  return std::move(r).value();
}

inline LoadedModel load_ok(const std::string& path) {
  LoadOptions lo;
  lo.model_path = path;
  auto m = load_model(lo);
  REQUIRE_MESSAGE(m.has_value(), m.status().to_string());
  return std::move(m).value();
}

}  // namespace pdctl::engine::test

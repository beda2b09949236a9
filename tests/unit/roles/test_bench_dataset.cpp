// Datasets of the serving benchmark: lengths, seeds, and sglang's draws. Expected orders
// and numbers come from CPython's random and numpy with the same seed (quoted).
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <stdlib.h>

#include "roles/bench/bench_dataset.h"
#include "test_bench_fake_tokenizer.h"

namespace fs = std::filesystem;
using namespace pdctl::roles;
using pdctl::roles::testing::CharTokenizer;

namespace {

struct TempFile {
  fs::path dir, path;
  explicit TempFile(const std::string& text) {
    char tmpl[] = "/tmp/pdctl-bench-XXXXXX";
    dir = mkdtemp(tmpl);
    path = dir / "data.json";
    std::ofstream(path) << text;
  }
  ~TempFile() { fs::remove_all(dir); }
};

BenchOptions options(const std::string& dataset, int n, int in_len, int out_len, double ratio) {
  BenchOptions o;
  o.dataset_name = dataset;
  o.num_prompts = n;
  o.random_input_len = in_len;
  o.random_output_len = out_len;
  o.random_range_ratio = ratio;
  return o;
}

std::vector<DatasetRow> build(const BenchOptions& o, uint32_t seed, const BenchTokenizer& tok,
                              Backend backend = Backend::kSglang) {
  BenchRng rng(seed);
  auto rows = build_dataset(o, backend, tok, rng);
  REQUIRE_MESSAGE(rows.has_value(), rows.status().to_string());
  return std::move(rows).value();
}

bool same(const std::vector<DatasetRow>& a, const std::vector<DatasetRow>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].prompt != b[i].prompt || a[i].prompt_ids != b[i].prompt_ids ||
        a[i].prompt_len != b[i].prompt_len || a[i].output_len != b[i].output_len) {
      return false;
    }
  }
  return true;
}

// Six ShareGPT entries: five with two or more turns (one under "conversation"), one with a
// single turn, which is dropped before the shuffle.
const char* kShareGpt = R"([
  {"id": "a", "conversations": [{"from": "human", "value": "alpha question"},
                                {"from": "gpt", "value": "alpha answer here"}]},
  {"id": "b", "conversations": [{"from": "human", "value": "only one turn"}]},
  {"id": "c", "conversations": [{"from": "human", "value": "bravo"},
                                {"from": "gpt", "value": "bravo answer"},
                                {"from": "human", "value": "ignored third turn"}]},
  {"id": "d", "conversation":  [{"from": "human", "value": "charlie prompt text"},
                                {"from": "gpt", "value": "x"}]},
  {"id": "e", "conversations": [{"from": "human", "value": ""},
                                {"from": "gpt", "value": "empty prompt"}]},
  {"id": "f", "conversations": [{"from": "human", "value": "delta delta"},
                                {"from": "gpt", "value": "delta answer, long enough"}]}
])";

}  // namespace

TEST_CASE("random lengths are numpy's randint over [max(int(L * r), 1), L]") {
  NumpyRandom rng(1);
  CHECK(random_lengths(rng, 1024, 0.5, 4) == std::vector<int>{549, 747, 584, 656});
  NumpyRandom fixed(1);
  CHECK(random_lengths(fixed, 100, 1.0, 3) == std::vector<int>{100, 100, 100});
  NumpyRandom zero(1);
  CHECK(random_lengths(zero, 0, 0.5, 2) == std::vector<int>{0, 0});
  NumpyRandom low(1);
  for (int len : random_lengths(low, 3, 0.0, 50)) CHECK((len >= 1 && len <= 3));
}

TEST_CASE("random-ids: exact lengths with range ratio 1.0, sglang's id pattern, sent as ids") {
  CharTokenizer tok;
  auto rows = build(options("random-ids", 3, 6, 9, 1.0), 1, tok);
  REQUIRE(rows.size() == 3);
  // numpy seed 1, randint(0, 75, 3) == [37, 12, 72] (no draws for the fixed lengths)
  const std::vector<std::vector<int32_t>> want = {
      {37, 38, 39, 40, 41, 42}, {13, 14, 15, 16, 17, 18}, {74, 0, 1, 2, 3, 4}};
  for (size_t i = 0; i < 3; ++i) {
    CHECK(rows[i].prompt_ids == want[i]);
    CHECK(rows[i].prompt.empty());
    CHECK(rows[i].prompt_len == 6);
    CHECK(rows[i].output_len == 9);
  }
}

TEST_CASE("random-ids for openai-chat is decoded to text, leaving room for BOS") {
  CharTokenizer tok;  // adds BOS
  auto rows = build(options("random-ids", 2, 6, 9, 1.0), 1, tok, Backend::kOpenAIChat);
  for (const auto& row : rows) {
    CHECK(row.prompt_ids.empty());
    CHECK(tok.encode(row.prompt, false).size() == 5);
    CHECK(row.prompt_len == 6);  // what the server sees, BOS included
  }
}

TEST_CASE("random (no file): text prompts of the sampled length, no control tokens") {
  SUBCASE("range ratio 1.0 is exact; the server's BOS makes the total") {
    CharTokenizer tok;
    auto rows = build(options("random", 20, 64, 32, 1.0), 5, tok);
    REQUIRE(rows.size() == 20);
    for (const auto& row : rows) {
      CHECK(row.prompt_len == 64);  // counted as the server sees it, as sglang counts it
      CHECK(row.output_len == 32);
      auto ids = tok.encode(row.prompt, false);
      CHECK(ids.size() == 63);
      for (int32_t id : ids) CHECK_FALSE(tok.is_special(id));
      CHECK(tok.encode(row.prompt, true).size() == 64);
    }
  }
  SUBCASE("range ratio 0.5 stays within bounds and varies") {
    CharTokenizer tok(/*add_bos=*/false);
    auto rows = build(options("random", 200, 100, 40, 0.5), 5, tok);
    std::set<int> seen;
    for (const auto& row : rows) {
      CHECK((row.prompt_len >= 50 && row.prompt_len <= 100));
      CHECK((row.output_len >= 20 && row.output_len <= 40));
      CHECK(tok.encode(row.prompt, false).size() == static_cast<size_t>(row.prompt_len));
      seen.insert(row.prompt_len);
    }
    CHECK(seen.size() > 10);
  }
  SUBCASE("--tokenize-prompt sends ids") {
    CharTokenizer tok;
    BenchOptions o = options("random", 2, 8, 4, 1.0);
    o.tokenize_prompt = true;
    auto rows = build(o, 5, tok);
    CHECK(rows[0].prompt_ids.size() == 8);
    CHECK(rows[0].prompt_len == 8);
  }
}

TEST_CASE("the same seed gives the same dataset; another seed another") {
  CharTokenizer tok;
  TempFile file(kShareGpt);
  std::vector<BenchOptions> all = {options("random", 30, 50, 20, 0.3),
                                   options("random-ids", 30, 50, 20, 0.3),
                                   options("generated-shared-prefix", 0, 0, 0, 0)};
  all.push_back(options("random", 4, 12, 20, 0.3));
  all.back().dataset_path = file.path.string();
  all[2].gsp_num_groups = 3;
  all[2].gsp_prompts_per_group = 4;
  all[2].gsp_system_prompt_len = 20;
  all[2].gsp_question_len = 6;
  all[2].gsp_output_len = 8;
  all[2].gsp_range_ratio = 0.5;
  for (const auto& o : all) {
    CAPTURE(o.dataset_name);
    CHECK(same(build(o, 42, tok), build(o, 42, tok)));
    CHECK_FALSE(same(build(o, 42, tok), build(o, 43, tok)));
  }
}

TEST_CASE("random from a ShareGPT file: prompts repeated or cut to the sampled length") {
  CharTokenizer tok(/*add_bos=*/false);
  TempFile file(kShareGpt);
  BenchOptions o = options("random", 3, 12, 4, 1.0);
  o.dataset_path = file.path.string();
  auto rows = build(o, 3, tok);
  // Pairs a c d e f after the one-turn entry is dropped; random.seed(3);
  // random.shuffle(range(5)) == [0, 2, 3, 4, 1]: alpha, d, e (empty, skipped), f.
  REQUIRE(rows.size() == 3);
  CHECK(rows[0].prompt == "alpha questi");
  CHECK(rows[1].prompt == "charlie prom");
  CHECK(rows[2].prompt == "delta deltad");  // "delta delta" (11) repeated, cut to 12
  for (const auto& row : rows) CHECK(row.prompt_len == 12);
}

TEST_CASE("sharegpt: shuffled with the seed, too short and too long pairs dropped") {
  CharTokenizer tok;  // BOS counts: prompt_len is encode(prompt) with specials, as HF's
  TempFile file(kShareGpt);
  BenchOptions o = options("sharegpt", 10, 0, 0, 0);
  o.dataset_path = file.path.string();
  SUBCASE("lengths from the tokenizer") {
    auto rows = build(o, 3, tok);
    // Order alpha, d, e, f, c; d's completion "x" is 2 tokens with BOS: kept; e's empty
    // prompt is 1 token: dropped.
    REQUIRE(rows.size() == 4);
    CHECK(rows[0].prompt == "alpha question");
    CHECK(rows[0].prompt_len == 15);
    CHECK(rows[0].output_len == 18);
    CHECK(rows[1].prompt == "charlie prompt text");
    CHECK(rows[1].output_len == 2);
    CHECK(rows[2].prompt == "delta delta");
    CHECK(rows[3].prompt == "bravo");
  }
  SUBCASE("--sharegpt-context-len and --sharegpt-output-len") {
    o.sharegpt_context_len = 20;
    o.sharegpt_output_len = 8;
    auto rows = build(o, 3, tok);
    // prompt + 8 <= 20: alpha (15) and charlie (20) go, delta (12) and bravo (6) stay.
    REQUIRE(rows.size() == 2);
    CHECK(rows[0].prompt == "delta delta");
    CHECK(rows[1].prompt == "bravo");
    for (const auto& row : rows) CHECK(row.output_len == 8);
  }
  SUBCASE("--num-prompts caps the rows") {
    o.num_prompts = 2;
    CHECK(build(o, 3, tok).size() == 2);
  }
}

TEST_CASE("sharegpt: a missing or malformed file is a clear error") {
  CharTokenizer tok;
  auto error_of = [&](const BenchOptions& o) {
    BenchRng rng(1);
    auto r = build_dataset(o, Backend::kSglang, tok, rng);
    REQUIRE_FALSE(r.has_value());
    return r.status().message();
  };
  BenchOptions o = options("sharegpt", 5, 0, 0, 0);
  CHECK(error_of(o).find("--dataset-path") != std::string::npos);
  o.dataset_path = "/nonexistent/sharegpt.json";
  CHECK(error_of(o).find("cannot open") != std::string::npos);
  const std::map<std::string, std::string> bad = {
      {"[{\"conversations\": [", "not valid JSON"},
      {"{\"conversations\": []}", "expected a JSON array"},
      {"[1, 2]", "entry 0 is not an object"},
      {"[{\"conversations\": {\"value\": \"x\"}}]", "not an array"},
      {"[{\"conversations\": [{\"from\": \"human\"}, {\"value\": \"y\"}]}]", "without a string \"value\""},
      {"[{\"conversations\": [{\"value\": \"\"}, {\"value\": \"\"}]}]", "no conversation passes"}};
  for (const auto& [text, want] : bad) {
    CAPTURE(text);
    TempFile file(text);
    o.dataset_path = file.path.string();
    std::string msg = error_of(o);
    CHECK(msg.find(want) != std::string::npos);
    if (want != "no conversation passes") CHECK(msg.find(file.path.string()) != std::string::npos);
  }
}

TEST_CASE("generated-shared-prefix: groups of prompts sharing a system prompt") {
  CharTokenizer tok;
  BenchOptions o;
  o.dataset_name = "generated-shared-prefix";
  o.num_prompts = 1;  // not used, as in sglang
  o.gsp_num_groups = 4;
  o.gsp_prompts_per_group = 5;
  o.gsp_system_prompt_len = 40;
  o.gsp_question_len = 8;
  o.gsp_output_len = 16;
  auto rows = build(o, 9, tok);
  REQUIRE(rows.size() == 20);
  std::map<std::string, int> per_prefix;
  std::vector<std::string> order;
  for (const auto& row : rows) {
    // One character per token here, so the parts are at fixed places.
    REQUIRE(row.prompt.size() == 50);
    std::string prefix = row.prompt.substr(0, 40);
    CHECK(row.prompt.substr(40, 2) == "\n\n");
    std::string question = row.prompt.substr(42);
    ++per_prefix[prefix];
    order.push_back(prefix);
    // Lengths are fixed with the default range ratio 1.0; the tokenizer counts the rest:
    // BOS + 40 + "\n\n" + 8.
    CHECK(tok.encode(prefix, false).size() == 40);
    CHECK(tok.encode(question, false).size() == 8);
    CHECK(row.prompt_len == 51);
    CHECK(row.output_len == 16);
  }
  CHECK(per_prefix.size() == 4);
  for (const auto& [prefix, count] : per_prefix) CHECK(count == 5);
  // Shuffled: not grouped by system prompt.
  bool grouped = true;
  for (size_t i = 0; i < order.size(); ++i) grouped &= order[i] == order[i / 5 * 5];
  CHECK_FALSE(grouped);
}

TEST_CASE("options that do not fit together") {
  CharTokenizer tok;
  BenchRng rng(1);
  BenchOptions o = options("random", 2, 8, 4, 1.0);
  o.tokenize_prompt = true;
  CHECK_FALSE(build_dataset(o, Backend::kOpenAIChat, tok, rng).has_value());
  o.dataset_name = "generated-shared-prefix";
  CHECK_FALSE(build_dataset(o, Backend::kSglang, tok, rng).has_value());
}

TEST_CASE("warmup asks for at most 32 tokens") {
  DatasetRow row;
  row.output_len = 100;
  CHECK(warmup_output_len(row) == 32);
  row.output_len = 7;
  CHECK(warmup_output_len(row) == 7);
}

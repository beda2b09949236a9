// GGUF tokenizers: the "gpt2" path is checked by writing the llama3 and qwen3 vocabularies into
// GGUF metadata (as convert_hf_to_gguf does) and comparing with the Hugging Face goldens; the
// "llama" path by a small vocabulary whose merges by score are worked out by hand, and by
// stories260K in test_tokenizer_golden.cpp. Malformed metadata must be an error naming the key.
#include <doctest/doctest.h>

#include <cstring>

#include "engine/gguf.h"
#include "test_tokenizer_util.h"

using namespace pdctl::engine;
using pdctl::Result;
using pdctl::Status;
using namespace tokenizer_test;

namespace {

// Writes GGUF v3 metadata (no tensors).
class GgufWriter {
 public:
  void str(const std::string& key, const std::string& v) {
    begin(key, 8);
    put_str(v);
  }
  void u32(const std::string& key, uint32_t v) {
    begin(key, 4);
    put(v);
  }
  void boolean(const std::string& key, bool v) {
    begin(key, 7);
    put(static_cast<uint8_t>(v));
  }
  void strings(const std::string& key, const std::vector<std::string>& v) {
    begin(key, 9);
    put(uint32_t{8});
    put(static_cast<uint64_t>(v.size()));
    for (const auto& s : v) put_str(s);
  }
  void i32s(const std::string& key, const std::vector<int32_t>& v) {
    begin(key, 9);
    put(uint32_t{5});
    put(static_cast<uint64_t>(v.size()));
    for (int32_t x : v) put(x);
  }
  void f32s(const std::string& key, const std::vector<float>& v) {
    begin(key, 9);
    put(uint32_t{6});
    put(static_cast<uint64_t>(v.size()));
    for (float x : v) put(x);
  }
  std::vector<uint8_t> bytes() const {
    std::vector<uint8_t> out;
    auto app = [&](const void* p, size_t n) {
      const auto* b = static_cast<const uint8_t*>(p);
      out.insert(out.end(), b, b + n);
    };
    app("GGUF", 4);
    const uint32_t version = 3;
    const uint64_t n_tensors = 0;
    app(&version, 4);
    app(&n_tensors, 8);
    app(&n_kv_, 8);
    out.insert(out.end(), body_.begin(), body_.end());
    return out;
  }

 private:
  template <class T>
  void put(T v) {
    const auto* b = reinterpret_cast<const uint8_t*>(&v);
    body_.insert(body_.end(), b, b + sizeof v);
  }
  void put_str(const std::string& s) {
    put(static_cast<uint64_t>(s.size()));
    body_.insert(body_.end(), s.begin(), s.end());
  }
  void begin(const std::string& key, uint32_t type) {
    ++n_kv_;
    put_str(key);
    put(type);
  }
  std::vector<uint8_t> body_;
  uint64_t n_kv_ = 0;
};

Result<Tokenizer> from_bytes(const std::vector<uint8_t>& bytes) {
  auto g = GgufFile::parse(bytes, "test.gguf");
  if (!g) return std::move(g).status();
  return Tokenizer::from_gguf(*g);
}

// A tokenizer.json's vocabulary as GGUF "gpt2" metadata.
std::vector<uint8_t> gguf_from_tokenizer_json(const std::string& name, const std::string& pre) {
  const auto j = read_json(shared_path("tokenizers/" + name + "/tokenizer.json"));
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  for (auto it = j["model"]["vocab"].begin(); it != j["model"]["vocab"].end(); ++it) {
    const auto id = it.value().get<size_t>();
    if (tokens.size() <= id) tokens.resize(id + 1), types.resize(id + 1, 1);
    tokens[id] = it.key();
  }
  for (const auto& a : j["added_tokens"]) {
    const auto id = a["id"].get<size_t>();
    if (tokens.size() <= id) tokens.resize(id + 1), types.resize(id + 1, 1);
    tokens[id] = a["content"];
    types[id] = a["special"].get<bool>() ? 3 : 4;
  }
  std::vector<std::string> merges;
  for (const auto& m : j["model"]["merges"]) {
    merges.push_back(m.is_string() ? m.get<std::string>() : m[0].get<std::string>() + " " + m[1].get<std::string>());
  }
  GgufWriter w;
  w.str("general.architecture", "llama");
  w.str("tokenizer.ggml.model", "gpt2");
  w.str("tokenizer.ggml.pre", pre);
  w.strings("tokenizer.ggml.tokens", tokens);
  w.i32s("tokenizer.ggml.token_type", types);
  w.strings("tokenizer.ggml.merges", merges);
  w.boolean("tokenizer.ggml.add_bos_token", false);
  return w.bytes();
}

}  // namespace

TEST_CASE("gguf tokenizer: gpt2 vocabularies of llama3 (llama-bpe) and qwen3 (qwen2) match the goldens") {
  struct Case {
    const char* name;
    const char* pre;
  };
  for (const Case c : {Case{"llama3", "llama-bpe"}, Case{"qwen3", "qwen2"}}) {
    const std::string golden = std::string("golden/tokenizer_") + c.name + ".json";
    if (!have(std::string("tokenizers/") + c.name + "/tokenizer.json") || !have(golden)) {
      MESSAGE("skipped: the " << c.name << " tokenizer or its golden file is absent");
      continue;
    }
    CAPTURE(c.name);
    const auto bytes = gguf_from_tokenizer_json(c.name, c.pre);
    auto tok = from_bytes(bytes);
    REQUIRE_MESSAGE(tok.has_value(), tok.status().to_string());
    CHECK_FALSE(tok->adds_bos());
    for (const auto& row : read_json(shared_path(golden))) {
      const std::string text = row["text"];
      CAPTURE(text);
      const auto ids = row["ids"].get<std::vector<int32_t>>();
      CHECK(tok->encode(text, false) == ids);
      CHECK(tok->decode(ids, false) == row["decoded"].get<std::string>());
    }
  }
}

TEST_CASE("gguf tokenizer: llama-bpe adds BOS by default, and tokenizer.ggml.add_bos_token decides") {
  // A tiny byte-level vocabulary: "a", "b", "ab" and two control tokens.
  auto build = [](std::optional<bool> add_bos, bool with_ids) {
    GgufWriter w;
    w.str("tokenizer.ggml.model", "gpt2");
    w.str("tokenizer.ggml.pre", "llama-bpe");
    w.strings("tokenizer.ggml.tokens", {"a", "b", "ab", "<|begin_of_text|>", "<|eot_id|>"});
    w.i32s("tokenizer.ggml.token_type", {1, 1, 1, 3, 3});
    w.strings("tokenizer.ggml.merges", {"a b"});
    if (with_ids) {
      w.u32("tokenizer.ggml.bos_token_id", 3);
      w.u32("tokenizer.ggml.eos_token_id", 4);
      w.u32("tokenizer.ggml.eot_token_id", 4);
    }
    if (add_bos) w.boolean("tokenizer.ggml.add_bos_token", *add_bos);
    return w.bytes();
  };
  const auto b0 = build(std::nullopt, false);
  auto t0 = from_bytes(b0);
  REQUIRE_MESSAGE(t0.has_value(), t0.status().to_string());
  CHECK(t0->bos_id() == -1);  // no BOS id in the metadata: nothing to add
  CHECK(t0->encode("ab", true) == std::vector<int32_t>{2});
  const auto b1 = build(std::nullopt, true);
  auto t1 = from_bytes(b1);
  REQUIRE_MESSAGE(t1.has_value(), t1.status().to_string());
  CHECK(t1->adds_bos());
  CHECK(t1->encode("ab", true) == std::vector<int32_t>{3, 2});
  CHECK(t1->encode("<|begin_of_text|>ab<|eot_id|>", false) == std::vector<int32_t>{3, 2, 4});
  CHECK(t1->eos_ids() == std::vector<int32_t>{4});
  CHECK(t1->is_special(3));
  const auto b2 = build(false, true);
  auto t2 = from_bytes(b2);
  REQUIRE(t2.has_value());
  CHECK_FALSE(t2->adds_bos());
  CHECK(t2->encode("ab", true) == std::vector<int32_t>{2});
}

TEST_CASE("gguf tokenizer: llama (SentencePiece by score) merges the best-scoring pair first") {
  // Vocabulary: specials, the 256 byte tokens, then pieces with scores chosen so that the
  // highest-scoring merge wins over the leftmost one.
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<int32_t> types = {2, 3, 3};
  std::vector<float> scores = {0, 0, 0};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    tokens.push_back(buf);
    types.push_back(6);
    scores.push_back(0);
  }
  const std::vector<std::pair<std::string, float>> pieces = {
      {"\xE2\x96\x81", -1}, {"a", -2}, {"b", -3}, {"c", -4},
      {"ab", -10},  // worse than "bc": "abc" must become "a" + "bc"
      {"bc", -5},   {"\xE2\x96\x81" "b", -6}};
  for (const auto& [p, s] : pieces) {
    tokens.push_back(p);
    types.push_back(1);
    scores.push_back(s);
  }
  auto id = [&](const std::string& p) {
    return static_cast<int32_t>(std::find(tokens.begin(), tokens.end(), p) - tokens.begin());
  };
  GgufWriter w;
  w.str("tokenizer.ggml.model", "llama");
  w.strings("tokenizer.ggml.tokens", tokens);
  w.i32s("tokenizer.ggml.token_type", types);
  w.f32s("tokenizer.ggml.scores", scores);
  w.u32("tokenizer.ggml.bos_token_id", 1);
  w.u32("tokenizer.ggml.eos_token_id", 2);
  const auto bytes = w.bytes();
  auto tok = from_bytes(bytes);
  REQUIRE_MESSAGE(tok.has_value(), tok.status().to_string());
  // "abc" -> "▁abc": (a,b)=-10 and (b,c)=-5 are tokens: "bc" goes first, which leaves "ab"
  // stale (merging the leftmost pair first would give "ab" + "c").
  CHECK(tok->encode("abc", false) == std::vector<int32_t>{id("\xE2\x96\x81"), id("a"), id("bc")});
  // "b c" -> "▁b▁c": "▁b" (-6) wins; "▁c" is no token.
  CHECK(tok->encode("b c", true) ==
        std::vector<int32_t>{1, id("\xE2\x96\x81" "b"), id("\xE2\x96\x81"), id("c")});
  // A character outside the vocabulary falls back to its UTF-8 bytes; "<s>" in the text is BOS.
  CHECK(tok->encode("<s>\xC3\xA9", false) ==
        std::vector<int32_t>{1, id("\xE2\x96\x81"), 3 + 0xC3, 3 + 0xA9});
  CHECK(tok->decode(tok->encode("a b\xC3\xA9", true), true) == "a b\xC3\xA9");
}

TEST_CASE("gguf tokenizer: malformed metadata is an error naming the key") {
  auto error_of = [](GgufWriter& w) {
    const auto bytes = w.bytes();
    auto tok = from_bytes(bytes);
    REQUIRE_FALSE(tok.has_value());
    return tok.status().message();
  };
  {
    GgufWriter w;
    w.str("tokenizer.ggml.model", "llama");
    CHECK(error_of(w).find("tokenizer.ggml.tokens") != std::string::npos);
  }
  {
    GgufWriter w;
    w.str("tokenizer.ggml.model", "gpt2");
    w.strings("tokenizer.ggml.tokens", {"a", "b", "ab"});
    w.strings("tokenizer.ggml.merges", {"a b"});
    w.str("tokenizer.ggml.pre", "no-such-pre");
    const std::string e = error_of(w);
    CHECK(e.find("tokenizer.ggml.pre") != std::string::npos);
    CHECK(e.find("no-such-pre") != std::string::npos);
  }
  {
    GgufWriter w;
    w.str("tokenizer.ggml.model", "gpt2");
    w.strings("tokenizer.ggml.tokens", {"a", "b"});
    w.strings("tokenizer.ggml.merges", {"a b"});  // "ab" is not a token
    CHECK(error_of(w).find("tokenizer.ggml.merges") != std::string::npos);
  }
  {
    GgufWriter w;
    w.str("tokenizer.ggml.model", "llama");
    w.strings("tokenizer.ggml.tokens", {"a", "b"});
    w.i32s("tokenizer.ggml.token_type", {1});
    w.f32s("tokenizer.ggml.scores", {0, 0});
    CHECK(error_of(w).find("tokenizer.ggml.token_type") != std::string::npos);
  }
  {
    GgufWriter w;
    w.str("tokenizer.ggml.model", "bert");
    w.strings("tokenizer.ggml.tokens", {"a"});
    CHECK(error_of(w).find("tokenizer.ggml.model") != std::string::npos);
  }
}

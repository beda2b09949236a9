// The tokenizer's parts on small inputs whose answers follow from Hugging Face's rules: UTF-8
// repair, regex translation, added-token matching (lstrip, rstrip, single_word, normalized),
// Metaspace, the byte-level fallback, error messages, and the public queries.
#include <doctest/doctest.h>

#include <thread>

#include "engine/unicode_regex.h"
#include "engine/unicode_text.h"
#include "test_tokenizer_util.h"

using namespace pdctl::engine;
using namespace tokenizer_test;

namespace {

const std::string kFFFD = "\xEF\xBF\xBD";

// A scratch directory holding one tokenizer.json (and optionally tokenizer_config.json).
struct TempTokenizer {
  std::filesystem::path dir;
  TempTokenizer(const std::string& tokenizer_json, const std::string& config = "") {
    static int n = 0;
    dir = std::filesystem::temp_directory_path() /
          (std::string("pdctl_tok_") + std::to_string(::getpid()) + "_" + std::to_string(n++));
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "tokenizer.json") << tokenizer_json;
    if (!config.empty()) std::ofstream(dir / "tokenizer_config.json") << config;
  }
  ~TempTokenizer() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  pdctl::Result<Tokenizer> load() const { return Tokenizer::load(dir.string()); }
};

// A character-level BPE vocabulary: a..z and space, ids 0..26.
std::string char_vocab() {
  std::string v = "{";
  for (char c = 'a'; c <= 'z'; ++c) v.append("\"").append(1, c).append("\":").append(std::to_string(c - 'a')).append(",");
  v += "\" \":26}";
  return v;
}
int32_t ch(char c) { return c == ' ' ? 26 : c - 'a'; }
std::vector<int32_t> chars(const std::string& s) {
  std::vector<int32_t> ids;
  for (char c : s) ids.push_back(ch(c));
  return ids;
}

}  // namespace

TEST_CASE("unicode: lossy UTF-8 replaces each maximal ill-formed subpart once, as Rust does") {
  CHECK(unicode::utf8_lossy("ok") == "ok");
  CHECK(unicode::utf8_lossy("\xE4\xB8") == kFFFD);                     // truncated 3-byte
  CHECK(unicode::utf8_lossy("\xE4\x41") == kFFFD + "A");               // broken by ASCII
  CHECK(unicode::utf8_lossy("\xFF\xFE") == kFFFD + kFFFD);             // never valid
  CHECK(unicode::utf8_lossy("\xF0\x9F\x98") == kFFFD);                 // truncated emoji
  CHECK(unicode::utf8_lossy("\xED\xA0\x80") == kFFFD + kFFFD + kFFFD);  // a surrogate
  CHECK(unicode::utf8_lossy("\xC0\xAF") == kFFFD + kFFFD);             // overlong
  CHECK(unicode::is_valid_utf8("\xE4\xB8\xAD"));
  CHECK_FALSE(unicode::is_valid_utf8("\xE4\xB8"));
}

TEST_CASE("unicode: byte-level alphabet round trip") {
  const auto& table = unicode::byte_to_unicode();
  CHECK(table[' '] == "\xC4\xA0");  // Ġ
  CHECK(table['\n'] == "\xC4\x8A");  // Ċ
  CHECK(table['a'] == "a");
  for (int b = 0; b < 256; ++b) {
    size_t i = 0;
    char32_t cp;
    REQUIRE(unicode::next_code_point(table[b], i, cp));
    CHECK(unicode::unicode_to_byte(cp) == b);
  }
}

TEST_CASE("regex: \\s means White_Space (with U+0085) in and out of classes") {
  CHECK(translate_pattern(R"(\s+(?!\S))") == R"([\s\x{85}]+(?![^\s\x{85}]))");
  CHECK(translate_pattern(R"([^\s\p{L}])") == R"([^\s\x{85}\p{L}])");
  CHECK(translate_pattern(R"([\]\s])") == R"([\]\s\x{85}])");
  auto re = UnicodeRegex::compile(R"(\s+)");
  REQUIRE(re.has_value());
  std::vector<std::pair<size_t, size_t>> m;
  re->find_all("a\xC2\x85" "b c", m);
  REQUIRE(m.size() == 2);
  CHECK(m[0] == std::make_pair<size_t, size_t>(1, 3));
  auto bad = UnicodeRegex::compile("(unclosed");
  CHECK_FALSE(bad.has_value());
}

TEST_CASE("regex: long runs of whitespace do not overflow the matcher") {
  const Tokenizer* tok = shared_tokenizer("llama3");
  if (tok == nullptr) return;
  const std::string text = std::string("a") + std::string(200000, ' ') + "b" + std::string(50000, '\n');
  const auto ids = tok->encode(text, false);
  CHECK(tok->decode(ids, false) == text);
}

TEST_CASE("added tokens: lstrip/rstrip eat spaces, single_word needs word edges, normalized ones match lowercased") {
  const std::string json = R"({
    "added_tokens": [
      {"id": 100, "content": "<sp>", "special": true, "lstrip": true, "rstrip": true,
       "single_word": false, "normalized": false},
      {"id": 101, "content": "Cat", "special": false, "lstrip": false, "rstrip": false,
       "single_word": true, "normalized": true}],
    "normalizer": {"type": "Lowercase"},
    "pre_tokenizer": null,
    "model": {"type": "BPE", "vocab": )" + char_vocab() + R"(, "merges": []},
    "decoder": {"type": "Fuse"}})";
  TempTokenizer t(json);
  auto tok = t.load();
  REQUIRE_MESSAGE(tok.has_value(), tok.status().to_string());
  CHECK(tok->encode("x <sp>  y", false) == std::vector<int32_t>{ch('x'), 100, ch('y')});
  std::vector<int32_t> cat = chars("the ");
  cat.push_back(101);
  for (int32_t id : chars(" sat")) cat.push_back(id);
  CHECK(tok->encode("the CAT sat", false) == cat);
  CHECK(tok->encode("concat", false) == chars("concat"));  // not a whole word
  CHECK(tok->is_special(100));
  CHECK_FALSE(tok->is_special(101));
  // A normalized added token decodes to its normalized form.
  CHECK(tok->decode({ch('a'), 101, 100}, false) == "acat<sp>");
  CHECK(tok->decode({ch('a'), 101, 100}, true) == "acat");
  CHECK(tok->vocab_size() == 102);
  CHECK(tok->token_to_id("<sp>") == 100);
  CHECK(tok->token_to_id("q") == ch('q'));
  CHECK_FALSE(tok->token_to_id("zz").has_value());
}

TEST_CASE("metaspace: prepend_scheme first adds ▁ only at the start of the text") {
  const std::string json = R"({
    "added_tokens": [{"id": 50, "content": "<sep>", "special": true, "normalized": false}],
    "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": true},
    "model": {"type": "BPE", "ignore_merges": true, "merges": [],
              "vocab": {"▁hello": 0, "▁world": 1, "▁": 2, "w": 3, "o": 4, "r": 5, "l": 6, "d": 7}},
    "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": true}})";
  TempTokenizer t(json);
  auto tok = t.load();
  REQUIRE_MESSAGE(tok.has_value(), tok.status().to_string());
  CHECK(tok->encode("hello world", false) == std::vector<int32_t>{0, 1});
  CHECK(tok->encode("hello<sep>world", false) == std::vector<int32_t>{0, 50, 3, 4, 5, 6, 7});
  CHECK(tok->decode({0, 1}, false) == "hello world");
  CHECK(tok->decode({0, 50, 3, 4, 5, 6, 7}, false) == "hello<sep>world");
  CHECK(tok->token_bytes(0) == " hello");
}

TEST_CASE("tokenizer_config: add_bos_token and eos_token adjust the post-processor and EOS ids") {
  const std::string json = R"({
    "added_tokens": [{"id": 27, "content": "<s>", "special": true}, {"id": 28, "content": "</s>", "special": true}],
    "model": {"type": "BPE", "vocab": )" + char_vocab() + R"(, "merges": []},
    "decoder": {"type": "Fuse"}})";
  TempTokenizer t(json, R"({"bos_token": "<s>", "eos_token": {"content": "</s>"}, "add_bos_token": true,
                           "add_eos_token": true})");
  auto tok = t.load();
  REQUIRE_MESSAGE(tok.has_value(), tok.status().to_string());
  CHECK(tok->bos_id() == 27);
  CHECK(tok->eos_ids() == std::vector<int32_t>{28});
  CHECK(tok->adds_bos());
  CHECK(tok->encode("ab", true) == std::vector<int32_t>{27, ch('a'), ch('b'), 28});
  CHECK(tok->encode("ab", false) == chars("ab"));
  // No chat template in the files: the first chat request fails with a message.
  CHECK(tok->chat_template_name().empty());
  std::vector<ChatMessage> msgs = {{"user", "hi", std::nullopt}};
  auto r = tok->render_chat(msgs, {});
  REQUIRE_FALSE(r.has_value());
  CHECK(r.status().message().find("no chat template") != std::string::npos);
  CHECK(tok->set_chat_template("llama-2").is_ok());
  CHECK(tok->render_chat(msgs, {})->text == "<s>[INST] hi [/INST]");
}

TEST_CASE("tokenizer.json errors name the file and the key") {
  auto error_of = [](const std::string& json) {
    TempTokenizer t(json);
    auto tok = t.load();
    REQUIRE_FALSE(tok.has_value());
    const std::string msg = tok.status().message();
    CHECK(msg.find("tokenizer.json") != std::string::npos);
    return msg;
  };
  CHECK(error_of("{not json").find("not valid JSON") != std::string::npos);
  CHECK(error_of(R"({"added_tokens": []})").find("model is missing") != std::string::npos);
  CHECK(error_of(R"({"model": {"type": "Unigram", "vocab": []}})").find("Unigram") != std::string::npos);
  CHECK(error_of(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}})").find("merge 0") !=
        std::string::npos);
  CHECK(error_of(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [7]}})").find("model.merges[0]") !=
        std::string::npos);
  CHECK(error_of(R"({"model": {"type": "BPE", "vocab": {"a": "x"}, "merges": []}})").find("model.vocab") !=
        std::string::npos);
  CHECK(error_of(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                    "normalizer": {"type": "Sequence", "normalizers": [{"type": "Bogus"}]}})")
            .find("normalizer.normalizers[0]") != std::string::npos);
  CHECK(error_of(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                    "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "("}, "behavior": "Isolated"}})")
            .find("pre_tokenizer.pattern") != std::string::npos);
  CHECK(error_of(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                    "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<x>"}}]}})")
            .find("<x>") != std::string::npos);
  auto missing = Tokenizer::load("/nonexistent/dir");
  CHECK_FALSE(missing.has_value());
  const auto empty_dir = std::filesystem::temp_directory_path() / (std::string("pdctl_tok_empty_") + std::to_string(::getpid()));
  std::filesystem::create_directories(empty_dir);
  auto none = Tokenizer::load(empty_dir.string());
  REQUIRE_FALSE(none.has_value());
  CHECK(none.status().code() == pdctl::Errc::kNotFound);
  CHECK(none.status().message().find("tokenizer.json") != std::string::npos);
  std::filesystem::remove_all(empty_dir);
}

TEST_CASE("byte-level fallback: ids 3..258 are bytes, BOS 1, EOS 2, every id decodes") {
  const Tokenizer tok = Tokenizer::byte_level();
  CHECK(tok.vocab_size() == 259);
  CHECK(tok.bos_id() == 1);
  CHECK(tok.eos_ids() == std::vector<int32_t>{2});
  CHECK(tok.adds_bos());
  CHECK(tok.encode("hé", true) == std::vector<int32_t>{1, 3 + 'h', 3 + 0xC3, 3 + 0xA9});
  CHECK(tok.encode("hé", false) == std::vector<int32_t>{3 + 'h', 3 + 0xC3, 3 + 0xA9});
  // Special-token text is plain bytes here.
  const auto s = tok.encode("<s></s><unk>", false);
  CHECK(s.size() == 12);
  for (int32_t id : s) CHECK((id >= 3 && id <= 258));
  CHECK(tok.decode(tok.encode("hé <s>", true), true) == "hé <s>");
  CHECK(tok.decode({1, 3 + 'a', 2}, false) == "<s>a</s>");
  CHECK(tok.decode({259 + 'a', 3 + 256 * 7 + 'b'}, true) == "ab");  // (id - 3) mod 256
  CHECK(tok.decode({0}, true).empty());
  CHECK(tok.is_special(0));
  CHECK(tok.is_special(1));
  CHECK(tok.is_special(2));
  CHECK_FALSE(tok.is_special(3));
  CHECK(tok.token_bytes(3 + 0xE4) == "\xE4");
  CHECK(tok.token_text(1) == "<s>");
}

TEST_CASE("tokenizer queries: EOS ids, token text and bytes, BOS handling of the shared tokenizers") {
  if (const Tokenizer* t = shared_tokenizer("llama3")) {
    CHECK(t->bos_id() == 128000);
    CHECK_FALSE(t->adds_bos());  // its tokenizer.json adds nothing, as the golden shows
    CHECK(t->is_eos(128001));    // <|end_of_text|> from tokenizer_config.json
    CHECK(t->is_eos(128009));    // <|eot_id|>: the chat template's end of turn
    CHECK(t->chat_template_name() == "llama-3");
    const int32_t hello = t->encode(" hello", false).at(0);
    CHECK(t->token_text(hello) == "\xC4\xA0hello");
    CHECK(t->token_bytes(hello) == " hello");
    CHECK(t->is_special(128000));
    CHECK_FALSE(t->is_special(hello));
    CHECK(t->vocab_size() == 128256);
    CHECK_FALSE(t->token_text(999999).has_value());
    CHECK(t->decode({999999, hello}, false) == " hello");
  }
  if (const Tokenizer* t = shared_tokenizer("qwen3")) {
    CHECK(t->bos_id() == -1);
    CHECK(t->is_eos(151645));  // <|im_end|>
    CHECK(t->chat_template_name() == "qwen3");
    CHECK_FALSE(t->is_special(151667));  // <think> is an added token but not special
    CHECK(t->decode(t->encode("<think>x</think>", false), true) == "<think>x</think>");
  }
  if (const Tokenizer* t = shared_tokenizer("spm-bytefallback-32k")) {
    CHECK(t->bos_id() == 1);
    CHECK(t->adds_bos());
    CHECK(t->eos_ids() == std::vector<int32_t>{2});
    CHECK(t->token_bytes(*t->token_to_id("\xE2\x96\x81Hello")) == " Hello");
    CHECK(t->token_bytes(*t->token_to_id("<0xE4>")) == "\xE4");
    // Invalid UTF-8 in the input is read as U+FFFD.
    CHECK(t->decode(t->encode("a\xFF" "b", false), false) == std::string("a") + kFFFD + "b");
  }
}

TEST_CASE("tokenizer: encode and decode from several threads give the same answers") {
  const Tokenizer* t = shared_tokenizer("qwen3");
  if (t == nullptr) return;
  const std::vector<std::string> texts = {"Hello, world!", "你好，世界", "def f(x):\n    return x", "  spaces  "};
  std::vector<std::vector<int32_t>> expected;
  for (const auto& s : texts) expected.push_back(t->encode(s, false));
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      for (int i = 0; i < 200; ++i) {
        const size_t j = static_cast<size_t>(i + k) % texts.size();
        if (t->encode(texts[j], false) != expected[j]) ++mismatches;
        if (t->decode(expected[j], false) != texts[j]) ++mismatches;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(mismatches.load() == 0);
}

TEST_CASE("pre-tokenizers: Digits splits digits off (one by one when individual), merges apply per word") {
  for (bool individual : {true, false}) {
    const std::string json = std::string(R"({
      "pre_tokenizer": {"type": "Digits", "individual_digits": )") +
                             (individual ? "true" : "false") + R"(},
      "model": {"type": "BPE", "vocab": {"a": 0, "1": 1, "2": 2, "12": 3, "a1": 4}, "merges": [["1", "2"], ["a", "1"]]},
      "decoder": {"type": "Fuse"}})";
    TempTokenizer t(json);
    auto tok = t.load();
    REQUIRE_MESSAGE(tok.has_value(), tok.status().to_string());
    CAPTURE(individual);
    // "a" and the digits are separate words, so "a1" never merges.
    CHECK(tok->encode("a12", false) == (individual ? std::vector<int32_t>{0, 1, 2} : std::vector<int32_t>{0, 3}));
    CHECK(tok->decode(tok->encode("a12", false), false) == "a12");
  }
}

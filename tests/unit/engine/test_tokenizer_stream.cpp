// The streaming detokenizer against the full decode, on random id sequences: plain ids,
// special tokens, byte-fallback runs (valid and broken), partial UTF-8 and out-of-range ids.
#include <doctest/doctest.h>

#include <random>

#include "engine/unicode_text.h"
#include "test_tokenizer_util.h"

using namespace pdctl::engine;
using namespace tokenizer_test;

namespace {

// Streams `ids`; every chunk must be valid UTF-8 and the chunks must add up to the full decode.
void check_stream(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip_special) {
  const std::string full = tok.decode(ids, skip_special);
  auto dec = tok.incremental_decoder(skip_special);
  std::string streamed;
  for (int32_t id : ids) {
    const std::string chunk = dec.push(id);
    REQUIRE(unicode::is_valid_utf8(chunk));
    streamed += chunk;
  }
  const std::string rest = dec.finish();
  REQUIRE(unicode::is_valid_utf8(rest));
  streamed += rest;
  REQUIRE(streamed == full);
}

// Random sequences: a mix of ids from real text, arbitrary ids, specials and byte tokens.
void fuzz(const Tokenizer& tok, uint32_t seed, int rounds) {
  std::mt19937 rng(seed);
  const auto vocab = static_cast<int32_t>(tok.vocab_size());
  std::vector<int32_t> specials, bytes;
  for (int32_t id = 0; id < vocab; ++id) {
    if (tok.is_special(id)) specials.push_back(id);
    auto t = tok.token_text(id);
    if (t && t->size() == 6 && t->starts_with("<0x")) bytes.push_back(id);
  }
  const std::vector<int32_t> text = tok.encode("Hé 世界! 😀 naïve\n  code();", false);
  for (int r = 0; r < rounds; ++r) {
    std::vector<int32_t> ids;
    const int len = 1 + static_cast<int>(rng() % 40);
    for (int k = 0; k < len; ++k) {
      const uint32_t pick = rng() % 10;
      if (pick < 3) {
        ids.push_back(static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab)));
      } else if (pick < 5 && !bytes.empty()) {
        // Runs of byte tokens, often forming valid or broken UTF-8.
        const int run = 1 + static_cast<int>(rng() % 4);
        for (int b = 0; b < run; ++b) ids.push_back(bytes[rng() % bytes.size()]);
      } else if (pick < 6 && !specials.empty()) {
        ids.push_back(specials[rng() % specials.size()]);
      } else if (pick < 7) {
        ids.push_back(vocab + static_cast<int32_t>(rng() % 5));  // out of range: skipped
      } else if (!text.empty()) {
        ids.push_back(text[rng() % text.size()]);
      }
    }
    CAPTURE(r);
    check_stream(tok, ids, false);
    check_stream(tok, ids, true);
  }
}

}  // namespace

TEST_CASE("tokenizer stream: random id sequences stream to the full decode") {
  for (const char* name : kTokenizers) {
    const Tokenizer* tok = shared_tokenizer(name);
    if (tok == nullptr) continue;
    CAPTURE(name);
    fuzz(*tok, 1234, 300);
  }
  if (have("models/stories260K.gguf")) {
    auto tok = Tokenizer::load(shared_path("models/stories260K.gguf"));
    REQUIRE(tok.has_value());
    fuzz(*tok, 99, 300);
  }
  fuzz(Tokenizer::byte_level(), 7, 300);
}

TEST_CASE("tokenizer stream: a character split over byte-level tokens comes out whole") {
  const Tokenizer* tok = shared_tokenizer("qwen3");
  if (tok == nullptr) return;
  // "😀" is several byte-level tokens in Qwen's vocabulary; nothing may come out before the
  // last of them.
  const auto ids = tok->encode("a😀b", false);
  REQUIRE(ids.size() >= 3);
  auto dec = tok->incremental_decoder(false);
  std::vector<std::string> chunks;
  for (int32_t id : ids) chunks.push_back(dec.push(id));
  chunks.push_back(dec.finish());
  std::string all;
  for (const auto& c : chunks) {
    CHECK(unicode::is_valid_utf8(c));
    CHECK(c.find("\xEF\xBF\xBD") == std::string::npos);
    all += c;
  }
  CHECK(all == "a😀b");
}

TEST_CASE("tokenizer stream: SentencePiece byte runs wait for their end, broken ones become U+FFFD") {
  const Tokenizer* tok = shared_tokenizer("spm-bytefallback-32k");
  if (tok == nullptr) return;
  auto byte = [&](int b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    return *tok->token_to_id(buf);
  };
  const int32_t hello = tok->encode("Hello", false).at(0);
  // E4 B8 AD is "中"; E4 B8 followed by a normal token is a broken run: two U+FFFD.
  std::vector<int32_t> ok = {hello, byte(0xE4), byte(0xB8), byte(0xAD), hello};
  auto dec = tok->incremental_decoder(false);
  CHECK(dec.push(ok[0]) == "Hello");
  CHECK(dec.push(ok[1]).empty());
  CHECK(dec.push(ok[2]).empty());
  CHECK(dec.push(ok[3]).empty());  // the run may go on
  CHECK(dec.push(ok[4]) == "中 Hello");
  CHECK(dec.finish().empty());
  std::vector<int32_t> broken = {hello, byte(0xE4), byte(0xB8), hello};
  CHECK(tok->decode(broken, false) == "Hello\xEF\xBF\xBD\xEF\xBF\xBD Hello");
  check_stream(*tok, broken, false);
}

TEST_CASE("tokenizer stream: the byte-level fallback streams lossy UTF-8 like its decode") {
  const Tokenizer tok = Tokenizer::byte_level();
  const std::vector<int32_t> ids = {1, 3 + 'h', 3 + 0xE4, 3 + 0xB8, 3 + 0xAD, 3 + 0xFF, 3 + 'x', 2, 259 + 'y'};
  CHECK(tok.decode(ids, true) == "h中\xEF\xBF\xBDxy");
  check_stream(tok, ids, true);
  check_stream(tok, ids, false);
}

// Output text and stop strings (TextStream) with the byte-level tokenizer, where id = byte + 3,
// so each character is one token and the expected text is plain to see.
#include <doctest/doctest.h>

#include "engine/scheduler_text.h"

using namespace pdctl::engine;

namespace {

struct Run {
  std::vector<std::string> pieces;  // what each push released
  std::string text;
  std::optional<size_t> matched;
  size_t tokens = 0;                // pushed before the match
};

Run feed(const std::string& s, std::vector<std::string> stop, bool no_stop_trim = false, bool finish = true) {
  static const Tokenizer tok = Tokenizer::byte_level();
  TextStream ts(&tok, true, true, std::move(stop), no_stop_trim);
  Run r;
  for (unsigned char ch : s) {
    std::string out;
    ++r.tokens;
    r.matched = ts.push(static_cast<int32_t>(ch) + 3, out);
    r.pieces.push_back(out);
    r.text += out;
    if (r.matched) return r;
  }
  if (finish) {
    std::string out;
    ts.finish(out);
    r.text += out;
  }
  return r;
}

}  // namespace

TEST_CASE("text stream: no stop strings, every character is released at once") {
  Run r = feed("hello", {});
  CHECK(r.text == "hello");
  CHECK(r.pieces == std::vector<std::string>{"h", "e", "l", "l", "o"});
}

TEST_CASE("text stream: a stop string ends the text before it; what follows is dropped") {
  Run r = feed("say hello world", {"lo w"});
  REQUIRE(r.matched);
  CHECK(*r.matched == 0);
  CHECK(r.text == "say hel");
  CHECK(r.tokens == 11);  // ends with the token that completed the stop string (the 'w')
}

TEST_CASE("text stream: a possible start of a stop string is held back until it cannot be") {
  Run r = feed("abcabd", {"abd"});
  REQUIRE(r.matched);
  CHECK(r.text == "abc");
  // "a", "ab" are held; "c" releases "abc"; then "a", "ab" held again until the match.
  CHECK(r.pieces == std::vector<std::string>{"", "", "abc", "", "", ""});
  r = feed("abcab", {"abd"});  // ends without the stop string: the held text comes out at the end
  CHECK_FALSE(r.matched);
  CHECK(r.text == "abcab");
}

TEST_CASE("text stream: the earliest occurrence of several stop strings wins") {
  Run r = feed("one two three", {"three", "two"});
  REQUIRE(r.matched);
  CHECK(*r.matched == 1);
  CHECK(r.text == "one ");
  // Both complete with the same token: the one that starts first.
  r = feed("xabcd", {"bcd", "abcd"});
  REQUIRE(r.matched);
  CHECK(*r.matched == 1);
  CHECK(r.text == "x");
}

TEST_CASE("text stream: no_stop_trim keeps the stop string") {
  Run r = feed("say hello world", {"lo w"}, true);
  REQUIRE(r.matched);
  CHECK(r.text == "say hello w");
}

TEST_CASE("text stream: multi-byte characters are never split, also around stop strings") {
  Run r = feed("día de sol", {"de s"});
  REQUIRE(r.matched);
  CHECK(r.text == "día ");
  r = feed("año", {"ño"});
  REQUIRE(r.matched);
  CHECK(r.text == "a");
  r = feed("añadir", {"ñu"});
  CHECK_FALSE(r.matched);
  CHECK(r.text == "añadir");
}

TEST_CASE("text stream: without a tokenizer or with detokenize off there is no text") {
  TextStream none(nullptr, true, true, {"x"}, false);
  std::string out;
  CHECK_FALSE(none.enabled());
  CHECK_FALSE(none.push(3 + 'x', out));
  const Tokenizer tok = Tokenizer::byte_level();
  TextStream off(&tok, false, true, {}, false);
  CHECK_FALSE(off.push(3 + 'x', out));
  off.finish(out);
  CHECK(out.empty());
}

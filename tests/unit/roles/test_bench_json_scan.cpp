// The no-DOM JSON view agrees with nlohmann-json on what is valid and on what a key holds.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "roles/bench/bench_json_scan.h"

using pdctl::roles::append_json_string;
using pdctl::roles::JsonKind;
using pdctl::roles::JsonView;

TEST_CASE("validity agrees with nlohmann-json") {
  const std::vector<std::string> texts = {
      R"({})", R"([])", R"( {"a": [1, 2.5e-3, -0, true, false, null, "x"]} )", R"("\u00e9\n")",
      R"(0)", R"(-12.5E+3)", R"({"a":{"b":{"c":[[],[{}]]}}})",
      // invalid
      R"()", R"({)", R"({"a" 1})", R"({"a":1,})", R"([1,])", R"(01)", R"(1.)", R"(.5)", R"(+1)",
      R"("\x")", R"("\u12")", "\"a\tb\"", R"({"a":1} x)", R"(tru)", R"(nul)", R"([1 2])",
      R"({1:2})", R"("unterminated)", R"(-)", R"(1e)", R"([)", R"(})"};
  for (const auto& t : texts) {
    CAPTURE(t);
    bool ours = JsonView::parse(t).has_value();
    bool ref = nlohmann::json::accept(t);
    CHECK(ours == ref);
  }
}

TEST_CASE("nesting deeper than the limit is refused, not a stack overflow") {
  std::string deep(100000, '[');
  deep += std::string(100000, ']');
  auto r = JsonView::parse(deep);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.status().message().find("nested too deeply") != std::string::npos);
}

TEST_CASE("lookups by key and index") {
  const std::string text =
      R"({"id":"x","choices":[{"index":0,"text":" he\"llo\n","logprobs":null,)"
      R"("finish_reason":null}],"usage":{"prompt_tokens":5,"completion_tokens":12},)"
      R"("k\u0065y":"escaped key","dup":1,"dup":2,"f":12.0,"g":1.5})";
  auto doc = JsonView::parse(text);
  REQUIRE(doc.has_value());
  CHECK(doc->is_object());
  auto text_v = doc->get("choices").value().at(0).value().get("text");
  REQUIRE(text_v.has_value());
  std::string s;
  CHECK(text_v->get_string(s));
  CHECK(s == " he\"llo\n");
  CHECK(text_v->string_size() == s.size());
  CHECK(text_v->is_nonempty_string());
  CHECK(doc->get("usage")->get("completion_tokens")->as_int() == 12);
  CHECK_FALSE(doc->get("choices")->at(1).has_value());
  CHECK(doc->get("choices")->at(0)->get("logprobs")->kind() == JsonKind::kNull);
  CHECK_FALSE(doc->get("missing").has_value());
  CHECK(doc->get("key").has_value());        // the key was written with an escape
  CHECK(doc->get("dup")->as_int() == 2);     // the last one wins, as in Python
  CHECK(doc->get("f")->as_int() == 12);      // integral float
  CHECK_FALSE(doc->get("g")->as_int().has_value());
  CHECK(doc->get("g")->as_double() == 1.5);
  CHECK_FALSE(doc->get("id")->get("x").has_value());  // not an object
  CHECK_FALSE(doc->at(0).has_value());                // not an array
}

TEST_CASE("string decoding agrees with nlohmann-json") {
  const std::vector<std::string> literals = {
      R"("plain")", R"("a\"b\\c\/d")", R"("\b\f\n\r\t")", R"("\u00e9\u6f22")",
      R"("\ud83d\ude00 smile")", R"("")"};
  for (const auto& lit : literals) {
    CAPTURE(lit);
    auto v = JsonView::parse(lit);
    REQUIRE(v.has_value());
    std::string ours;
    REQUIRE(v->get_string(ours));
    CHECK(ours == nlohmann::json::parse(lit).get<std::string>());
  }
  std::string lone;
  JsonView::parse(R"("\ud800x")")->get_string(lone);
  CHECK(lone == "\xef\xbf\xbdx");  // a lone surrogate becomes U+FFFD
}

TEST_CASE("strings are written as Python's json.dumps writes them") {
  // Expected output from CPython: print(json.dumps(s)).
  auto dumps = [](std::string_view s) {
    std::string out;
    append_json_string(out, s);
    return out;
  };
  CHECK(dumps("plain") == R"("plain")");
  CHECK(dumps("q\"b\\s/") == R"("q\"b\\s/")");
  CHECK(dumps("nl\n\t\r\b\f\x01\x7f") == R"("nl\n\t\r\b\f\u0001\u007f")");
  CHECK(dumps("\xc3\xa9\xe6\xbc\xa2\xf0\x9f\x98\x80") == R"("\u00e9\u6f22\ud83d\ude00")");
  CHECK(dumps("\xe2\x80\xa8") == R"("\u2028")");
  CHECK(dumps("bad\xff\xc3") == R"("bad\ufffd\ufffd")");  // invalid UTF-8
}

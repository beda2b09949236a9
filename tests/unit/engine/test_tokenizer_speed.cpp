// Encoding speed on ~100 KB of English (Debian's licence texts), one thread. It prints and
// asserts nothing about time, and is skipped in normal runs:
//   build/tests/unit_engine -tc='tokenizer speed*' --no-skip
#include <doctest/doctest.h>

#include <chrono>
#include <cstdio>

#include "test_tokenizer_util.h"

using namespace pdctl::engine;
using namespace tokenizer_test;

namespace {

std::string english_100k() {
  std::string text;
  for (const char* f : {"GPL-3", "GPL-2", "LGPL-2.1", "Apache-2.0", "MPL-2.0", "GFDL-1.3"}) {
    std::ifstream in(std::string("/usr/share/common-licenses/") + f);
    std::stringstream ss;
    ss << in.rdbuf();
    text += ss.str();
    if (text.size() >= 100 * 1024) break;
  }
  if (text.size() > 100 * 1024) text.resize(100 * 1024);
  return text;
}

void measure(const std::string& name, const Tokenizer& tok, const std::string& text) {
  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  const auto ids = tok.encode(text, false);
  const double first = std::chrono::duration<double>(clock::now() - t0).count();
  double best = 1e9;
  for (int i = 0; i < 5; ++i) {
    t0 = clock::now();
    const auto again = tok.encode(text, false);
    best = std::min(best, std::chrono::duration<double>(clock::now() - t0).count());
    CHECK(again == ids);
  }
  t0 = clock::now();
  const std::string back = tok.decode(ids, false);
  const double dec = std::chrono::duration<double>(clock::now() - t0).count();
  std::printf("%-22s %6zu tokens  encode: first %7.1f ms (%5.2f M tok/s), repeat %7.1f ms (%5.2f M tok/s)  decode %5.1f ms\n",
              name.c_str(), ids.size(), first * 1e3, ids.size() / first / 1e6, best * 1e3, ids.size() / best / 1e6,
              dec * 1e3);
}

}  // namespace

TEST_CASE("tokenizer speed: encode 100 KB of English (prints tokens/s)" * doctest::skip()) {
  const std::string text = english_100k();
  if (text.size() < 100 * 1024) {
    MESSAGE("skipped: /usr/share/common-licenses holds less than 100 KB");
    return;
  }
  std::printf("text: %zu bytes\n", text.size());
  for (const char* name : kTokenizers) {
    if (const Tokenizer* tok = shared_tokenizer(name)) measure(name, *tok, text);
  }
  if (have("models/stories260K.gguf")) {
    auto tok = Tokenizer::load(shared_path("models/stories260K.gguf"));
    REQUIRE(tok.has_value());
    measure("stories260K (gguf)", *tok, text);
  }
  measure("byte-level fallback", Tokenizer::byte_level(), text);
}

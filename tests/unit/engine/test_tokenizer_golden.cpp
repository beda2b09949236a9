// The golden rows made with Hugging Face's tokenizers (../shared/golden/tokenizer_*.json) and
// llama.cpp's prompt ids for stories260K: every row must match byte for byte.
#include <doctest/doctest.h>

#include "engine/gguf.h"
#include "engine/unicode_text.h"
#include "test_tokenizer_util.h"

using namespace pdctl::engine;
using namespace tokenizer_test;

namespace {

std::vector<int32_t> ids_of(const nlohmann::json& j) { return j.get<std::vector<int32_t>>(); }

void check_golden(const std::string& name) {
  const std::string golden = "golden/tokenizer_" + name + ".json";
  const Tokenizer* tok = shared_tokenizer(name);
  if (tok == nullptr) return;
  if (!have(golden)) {
    MESSAGE("skipped: " << shared_path(golden) << " is absent");
    return;
  }
  const auto rows = read_json(shared_path(golden));
  REQUIRE(rows.size() > 0);
  for (const auto& row : rows) {
    const std::string text = row["text"];
    CAPTURE(name);
    CAPTURE(text);
    CHECK(tok->encode(text, false) == ids_of(row["ids"]));
    CHECK(tok->encode(text, true) == ids_of(row["ids_with_special"]));
    CHECK(tok->decode(ids_of(row["ids"]), false) == row["decoded"].get<std::string>());
  }
}

// Feeds the ids one at a time; the chunks must be valid UTF-8 and add up to the full decode.
void check_stream(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip_special) {
  const std::string full = tok.decode(ids, skip_special);
  auto dec = tok.incremental_decoder(skip_special);
  std::string streamed;
  for (int32_t id : ids) {
    const std::string chunk = dec.push(id);
    CHECK(unicode::is_valid_utf8(chunk));
    streamed += chunk;
  }
  const std::string last = dec.finish();
  CHECK(unicode::is_valid_utf8(last));
  streamed += last;
  CHECK(streamed == full);
}

}  // namespace

TEST_CASE("tokenizer golden: llama3") { check_golden("llama3"); }
TEST_CASE("tokenizer golden: qwen3") { check_golden("qwen3"); }
TEST_CASE("tokenizer golden: spm-bytefallback-32k") { check_golden("spm-bytefallback-32k"); }

TEST_CASE("tokenizer golden: streaming each row one id at a time gives the full decode") {
  for (const char* name : kTokenizers) {
    const Tokenizer* tok = shared_tokenizer(name);
    const std::string golden = std::string("golden/tokenizer_") + name + ".json";
    if (tok == nullptr || !have(golden)) continue;
    for (const auto& row : read_json(shared_path(golden))) {
      CAPTURE(name);
      CAPTURE(row["text"].get<std::string>());
      const auto ids = ids_of(row["ids"]);
      // The golden text itself, keeping special tokens.
      check_stream(*tok, ids, false);
      const std::string expected = row["decoded"];
      auto dec = tok->incremental_decoder(false);
      std::string streamed;
      for (int32_t id : ids) streamed += dec.push(id);
      streamed += dec.finish();
      CHECK(streamed == expected);
      // With special tokens skipped, and with the post-processor's ids.
      check_stream(*tok, ids_of(row["ids_with_special"]), true);
    }
  }
}

TEST_CASE("tokenizer golden: stories260K prompts (GGUF llama tokenizer, BOS first)") {
  const std::string model = "models/stories260K.gguf", golden = "golden/stories260K_greedy.json";
  if (!have(model) || !have(golden)) {
    MESSAGE("skipped: " << shared_path(model) << " or " << shared_path(golden) << " is absent");
    return;
  }
  auto tok = Tokenizer::load(shared_path(model));
  REQUIRE_MESSAGE(tok.has_value(), tok.status().to_string());
  CHECK(tok->bos_id() == 1);
  CHECK(tok->is_eos(2));
  CHECK(tok->adds_bos());
  CHECK(tok->vocab_size() == 512);
  for (const auto& row : read_json(shared_path(golden))) {
    const std::string prompt = row["prompt"];
    CAPTURE(prompt);
    const auto expected = ids_of(row["prompt_tokens"]);
    CHECK(tok->encode(prompt, true) == expected);
    // The prompt decodes back (BOS skipped, the added leading space stripped).
    CHECK(tok->decode(expected, true) == prompt);
    // The continuation alone decodes to the golden text (its leading space stripped).
    const auto completion = ids_of(row["completion_tokens"]);
    CHECK(tok->decode(completion, true) == row["text"].get<std::string>());
    std::vector<int32_t> all = expected;
    all.insert(all.end(), completion.begin(), completion.end());
    check_stream(*tok, all, true);
    check_stream(*tok, all, false);
  }
}

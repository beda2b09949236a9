#pragma once
// The stages of a Hugging Face tokenizer pipeline, as internal interfaces: normalizers and
// pre-tokenizers run before the model on encode, decoders turn tokens back into text. Each
// kind has its own file (tokenizer_normalizers.cpp, tokenizer_pretokenizers.cpp,
// tokenizer_decoders.cpp) with its parser from tokenizer.json. Not part of the public API.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/status.h"
#include "engine/unicode_regex.h"

namespace pdctl::engine::tok {

// One piece of text on its way to the model.
struct PreToken {
  std::string text;
  bool at_start = false;  // begins at offset 0 of the caller's text (Metaspace "first")
};

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(std::string& s) const = 0;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits and rewrites the pieces in place; empty pieces are dropped.
  virtual void pre_tokenize(std::vector<PreToken>& pieces) const = 0;
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  // Hugging Face's `decode_chain`: tokens in, tokens out; the caller joins the result.
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
  // What one token contributes to the output as raw bytes, ignoring effects that depend on
  // its neighbours or position (stripping, UTF-8 repair): for logprob display.
  virtual void raw_piece(std::string& token) const = 0;
  // True when the token is a byte-fallback piece (<0x41>) that this decoder joins with its
  // neighbours; a streaming decoder waits for the end of such a run.
  virtual bool joins_byte_runs() const { return false; }
};

// Parsers from tokenizer.json values. `where` names the JSON path for error messages.
Result<std::unique_ptr<Normalizer>> parse_normalizer(const nlohmann::json& j, const std::string& where);
Result<std::unique_ptr<PreTokenizer>> parse_pre_tokenizer(const nlohmann::json& j,
                                                          const std::string& where);
Result<std::unique_ptr<Decoder>> parse_decoder(const nlohmann::json& j, const std::string& where);

// A Replace or Split pattern: {"String": "..."} (literal) or {"Regex": "..."}.
Result<UnicodeRegex> parse_pattern(const nlohmann::json& j, const std::string& where);

// Building blocks that the GGUF loader composes without JSON.
std::unique_ptr<Normalizer> make_nfc_normalizer();
// Spaces to "▁", and (prepend) one "▁" in front of the text.
std::unique_ptr<Normalizer> make_sentencepiece_normalizer(bool prepend);
Result<std::unique_ptr<PreTokenizer>> make_split_byte_level(std::string_view regex);
std::unique_ptr<Decoder> make_byte_level_decoder();
// ▁ to space, byte fallback, fuse, and (strip_space) the leading space of the text removed.
std::unique_ptr<Decoder> make_sentencepiece_decoder(bool strip_space);
// <0xXX> pieces to their bytes, everything joined and made valid UTF-8 (lossy): the decoder
// of the byte-level fallback tokenizer.
std::unique_ptr<Decoder> make_byte_piece_decoder();

// Byte-fallback pieces: "<0x41>" -> 0x41, or -1.
int parse_byte_piece(std::string_view token);

}  // namespace pdctl::engine::tok

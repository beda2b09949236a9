#pragma once
// The state behind engine::Tokenizer: one pipeline (added tokens, normalizer, pre-tokenizer,
// model, post-processor, decoder) built by a loader and then only read, so every method is
// const and safe to call from several threads at once. Not part of the public API.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/bpe.h"
#include "engine/tokenizer_added.h"
#include "engine/tokenizer_components.h"

namespace pdctl::engine {
class GgufFile;
}

namespace pdctl::engine::tok {

struct TokenizerImpl {
  std::string source;  // the file it came from, for messages

  AddedVocabulary added;
  std::unique_ptr<Normalizer> normalizer;      // may be null
  std::unique_ptr<PreTokenizer> pre_tokenizer;  // may be null
  std::unique_ptr<TokenModel> model;
  std::unique_ptr<Decoder> decoder;  // null: tokens joined with spaces, as Hugging Face does

  // The post-processor for one sequence: ids around the text when special tokens are added.
  std::vector<int32_t> prefix_ids, suffix_ids;

  int32_t bos_id = -1;
  std::vector<int32_t> eos_ids;
  std::string bos_text, eos_text;  // what chat templates write for bos_token and eos_token
  std::string chat_template;       // the Jinja source from the model's files, if any
  bool match_added_tokens = true;  // the byte-level fallback reads "<s>" as plain bytes

  // Encodes without the post-processor's ids.
  void encode_text(std::string_view text, std::vector<int32_t>& out) const;
  std::string decode(std::span<const int32_t> ids, bool skip_special) const;
  // The string of an id that decoding starts from: the added token's text or the model's.
  std::optional<std::string_view> token_string(int32_t id) const;
  size_t vocab_size() const;
};

// Loaders. `config` and `generation_config` may be empty paths (files absent).
Result<std::shared_ptr<TokenizerImpl>> load_hf(const std::string& tokenizer_json, const std::string& config,
                                               const std::string& generation_config);
Result<std::shared_ptr<TokenizerImpl>> load_gguf(const GgufFile& gguf);
std::shared_ptr<TokenizerImpl> make_byte_level();

}  // namespace pdctl::engine::tok

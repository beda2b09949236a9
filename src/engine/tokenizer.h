#pragma once
// Tokenizers, exact to Hugging Face's `tokenizers` library (and to llama.cpp for GGUF "llama"
// vocabularies), with a streaming detokenizer and the model's chat template.
//
// Sources: a Hugging Face directory (tokenizer.json, optional tokenizer_config.json and
// generation_config.json), a tokenizer.json file, a GGUF file (its tokenizer.ggml.* metadata:
// "llama" SentencePiece and "gpt2" byte-level BPE), or the byte-level fallback for models
// without tokenizer files.
//
// A Tokenizer is cheap to copy (the vocabulary is shared). encode, decode and render are const
// and safe to call from several threads at once; the setters are for start-up, before the
// tokenizer is shared.
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "engine/chat_template.h"

namespace pdctl::engine {

namespace tok {
struct TokenizerImpl;
}
class GgufFile;
class IncrementalDecoder;

class Tokenizer {
 public:
  // A directory with tokenizer.json, a tokenizer.json file, or a .gguf file. Errors name the
  // file and the key that is missing or malformed.
  static Result<Tokenizer> load(const std::string& path);
  static Result<Tokenizer> from_gguf(const GgufFile& gguf);
  // The byte-level fallback: 0 <unk>, 1 <s> (BOS), 2 </s> (EOS), ids 3..258 the bytes
  // 0x00..0xFF; ids from 259 up decode as byte (id - 3) mod 256. Adds BOS.
  static Tokenizer byte_level();

  // Text to ids; with add_special_tokens the post-processor's ids (BOS, ...) are added.
  // Special-token text in `text` (such as "<|im_start|>") is always matched as that token.
  // Bytes that are not valid UTF-8 are read as U+FFFD.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const;
  // Ids to text; ids outside the vocabulary are skipped. Always valid UTF-8.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens) const;
  std::string decode(std::initializer_list<int32_t> ids, bool skip_special_tokens) const {
    return decode(std::span<const int32_t>(ids.begin(), ids.size()), skip_special_tokens);
  }
  // A streaming detokenizer for one request (see IncrementalDecoder).
  IncrementalDecoder incremental_decoder(bool skip_special_tokens) const;

  // -1 when the model has no BOS token.
  int32_t bos_id() const { return bos_id_; }
  // Every id that ends generation: EOS, generation_config.json's eos_token_id and the chat
  // template's end-of-turn token.
  const std::vector<int32_t>& eos_ids() const { return eos_ids_; }
  bool is_eos(int32_t id) const;
  // Whether encode(text, true) starts with BOS.
  bool adds_bos() const;
  // For the loader: more ids that end generation (generation_config.json is read by load()).
  void add_eos_ids(std::span<const int32_t> ids);

  // One past the largest id the tokenizer knows (added tokens included).
  size_t vocab_size() const;
  // The vocabulary string of a token ("Ġhello", "<|eot_id|>"); nullopt for an unknown id.
  std::optional<std::string> token_text(int32_t id) const;
  // What the token contributes to the output, as bytes (" hello"): for logprob display. May
  // be part of a UTF-8 sequence; empty for an unknown id.
  std::string token_bytes(int32_t id) const;
  std::optional<int32_t> token_to_id(std::string_view token_text) const;
  bool is_special(int32_t id) const;

  // The chat template recognised from the model's files, or the error that makes the first
  // chat request fail (HTTP 400) when it was not recognised or is absent.
  Result<RenderedPrompt> render_chat(std::span<const ChatMessage> messages, const ChatOptions& options) const;
  // --chat-template NAME: replaces the detected template (and its end-of-turn EOS id).
  Status set_chat_template(std::string_view name);
  // The template's name ("llama-3", "qwen3", ...), or empty.
  std::string chat_template_name() const;
  // The error explaining why there is no chat template (ok when there is one).
  const Status& chat_template_status() const { return chat_status_; }

  // Where the tokenizer came from ("…/tokenizer.json", "…/model.gguf", "byte-level").
  const std::string& source() const;

 private:
  friend class IncrementalDecoder;
  explicit Tokenizer(std::shared_ptr<const tok::TokenizerImpl> impl);
  void set_template(Result<ChatTemplate> t);

  std::shared_ptr<const tok::TokenizerImpl> impl_;
  int32_t bos_id_ = -1;
  std::vector<int32_t> eos_ids_;
  std::optional<ChatTemplate> chat_;
  Status chat_status_;
  int32_t chat_eot_id_ = -1;  // the end-of-turn id that set_template added to eos_ids_
};

// Turns a request's generated ids into text as they arrive. It never returns part of a UTF-8
// sequence, and the concatenation of everything push() and finish() return equals
// Tokenizer::decode of all the ids. Text is held back while it may still change: an
// incomplete UTF-8 sequence, or a run of byte-fallback tokens that may continue.
class IncrementalDecoder {
 public:
  // The new text (often empty).
  std::string push(int32_t id);
  // Whatever was held back (call once, after the last push).
  std::string finish();
  // All ids pushed so far.
  const std::vector<int32_t>& ids() const { return ids_; }

 private:
  friend class Tokenizer;
  IncrementalDecoder(std::shared_ptr<const tok::TokenizerImpl> impl, bool skip_special);
  std::string advance(bool final);
  std::string resync(bool final);

  std::shared_ptr<const tok::TokenizerImpl> impl_;
  bool skip_special_;
  bool wait_byte_runs_;
  bool in_byte_run_ = false;  // the last id the decoder sees is a byte-fallback piece
  std::vector<int32_t> ids_;
  size_t anchor_ = 0;  // the window decoded on each step starts here
  size_t read_ = 0;    // ids before this are in the text returned so far
  std::string prefix_;  // decode of ids_[anchor_, read_)
  std::string emitted_;
};

}  // namespace pdctl::engine

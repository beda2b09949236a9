#pragma once
// The little the serving benchmark needs of a tokenizer: build prompts of a token length,
// count tokens. The engine's tokenizer is adapted to this (a few lines of glue), and tests
// use a small deterministic stand-in. Meanings follow Hugging Face's tokenizers, which
// sglang.bench_serving calls.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pdctl::roles {

class BenchTokenizer {
 public:
  virtual ~BenchTokenizer() = default;

  // Token ids of `text`. With add_special_tokens, the ids the server would see (BOS and
  // the like), as HF's encode(text); without, encode(text, add_special_tokens=False).
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const = 0;
  // The text of `ids`, special tokens written out (HF decode without skip_special_tokens).
  virtual std::string decode(std::span<const int32_t> ids) const = 0;
  // The base vocabulary (HF's tokenizer.vocab_size): every id in [0, vocab_size) is valid.
  virtual int32_t vocab_size() const = 0;
  // Control tokens (BOS, EOS, chat markers): left out of generated random prompts.
  virtual bool is_special(int32_t id) const = 0;
  // How many ids encode(text, true) adds around the text (HF num_special_tokens_to_add()).
  virtual int num_special_tokens_to_add() const {
    return static_cast<int>(encode("", true).size());
  }
};

}  // namespace pdctl::roles

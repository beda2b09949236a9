#pragma once
// Added tokens (special or not): found in the text before the model runs, leftmost-longest,
// honouring single_word, lstrip, rstrip and normalized as Hugging Face's AddedVocabulary does.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/bpe.h"
#include "engine/tokenizer_components.h"

namespace pdctl::engine::tok {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;  // matched in the normalized text rather than the raw text
};

// A stretch of text: plain text (id < 0) or one added token.
struct Segment {
  size_t begin = 0, end = 0;
  int32_t id = -1;
};

class AddedVocabulary {
 public:
  // Later additions with the same id replace earlier ones.
  void add(AddedToken token);
  // Builds the two matchers; normalized tokens are matched in their normalized form.
  void finalize(const Normalizer* normalizer);

  // Splits `text` on the raw (normalized == false) or the normalized tokens.
  void split(std::string_view text, bool normalized_pass, std::vector<Segment>& out) const;

  const AddedToken* find(int32_t id) const;
  std::optional<int32_t> find(std::string_view content) const;
  // The string decode uses for an added token: its normalized form where it has one.
  std::string_view decode_text(int32_t id) const;
  bool is_special(int32_t id) const {
    const AddedToken* t = find(id);
    return t != nullptr && t->special;
  }
  const std::vector<AddedToken>& tokens() const { return tokens_; }
  bool empty() const { return tokens_.empty(); }

 private:
  // A byte trie over the patterns of one pass.
  struct Trie {
    struct Node {
      std::vector<std::pair<unsigned char, int32_t>> next;  // sorted by byte
      int32_t token = -1;                                    // index into tokens_
    };
    std::vector<Node> nodes;
    std::array<bool, 256> first{};
    void insert(std::string_view pattern, int32_t token);
    // The longest pattern at `pos`: (token index, length) or token -1.
    std::pair<int32_t, size_t> longest(std::string_view text, size_t pos) const;
  };

  std::vector<AddedToken> tokens_;
  std::vector<std::string> normalized_;  // per token, the text matched in the normalized pass
  std::unordered_map<int32_t, size_t> by_id_;
  VocabMap by_content_;
  Trie raw_, norm_;
};

}  // namespace pdctl::engine::tok

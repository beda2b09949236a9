#pragma once
// A deterministic stand-in for the model's tokenizer in the serving benchmark's tests: one
// token per character of a small alphabet, and three control tokens. encode(decode(ids))
// gives back ids that are not control tokens, so lengths are easy to reason about.
#include <string>
#include <string_view>
#include <vector>

#include "roles/bench/bench_tokenizer.h"

namespace pdctl::roles::testing {

class CharTokenizer final : public BenchTokenizer {
 public:
  static constexpr int32_t kBos = 0;  // "<s>", added by encode(text, true) when add_bos
  static constexpr int32_t kEos = 1;  // "</s>"
  static constexpr int32_t kUnk = 2;  // "<unk>", for characters outside the alphabet
  static constexpr std::string_view kAlphabet =
      " abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-:;\n";

  explicit CharTokenizer(bool add_bos = true) : add_bos_(add_bos) {}

  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const override {
    std::vector<int32_t> ids;
    if (add_special_tokens && add_bos_) ids.push_back(kBos);
    for (size_t i = 0; i < text.size();) {
      bool matched = false;
      for (int32_t id = 0; id < 3; ++id) {
        std::string_view piece = kSpecial[id];
        if (text.substr(i, piece.size()) == piece) {
          ids.push_back(id);
          i += piece.size();
          matched = true;
          break;
        }
      }
      if (matched) continue;
      size_t pos = kAlphabet.find(text[i]);
      ids.push_back(pos == std::string_view::npos ? kUnk : static_cast<int32_t>(3 + pos));
      ++i;
    }
    return ids;
  }
  std::string decode(std::span<const int32_t> ids) const override {
    std::string out;
    for (int32_t id : ids) {
      if (id >= 0 && id < 3) {
        out += kSpecial[id];
      } else if (id >= 3 && id < vocab_size()) {
        out.push_back(kAlphabet[static_cast<size_t>(id - 3)]);
      }
    }
    return out;
  }
  int32_t vocab_size() const override { return static_cast<int32_t>(3 + kAlphabet.size()); }
  bool is_special(int32_t id) const override { return id >= 0 && id < 3; }

 private:
  static constexpr std::string_view kSpecial[3] = {"<s>", "</s>", "<unk>"};
  bool add_bos_;
};

}  // namespace pdctl::roles::testing

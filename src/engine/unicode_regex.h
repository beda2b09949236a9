#pragma once
// A compiled PCRE2 pattern (UTF, Unicode properties, JIT) that finds every non-overlapping
// match in a text: what the tokenizers' Split pre-tokenizer and Replace normalizer need.
// Patterns in tokenizer.json are written for Oniguruma; `translate_pattern` bridges the one
// difference that matters for them (what `\s` matches).
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace pdctl::engine {

class UnicodeRegex {
 public:
  // `literal`: the pattern is a plain string to find, not a regular expression.
  static Result<UnicodeRegex> compile(std::string_view pattern, bool literal = false);

  // Byte ranges [begin, end) of the non-empty matches, left to right. Safe to call from
  // several threads at once. `text` must be valid UTF-8.
  void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Code;
  std::shared_ptr<const Code> code_;
  std::string pattern_;
  bool literal_ = false;  // matched with a plain substring search
};

// Rewrites an Oniguruma/Rust pattern for PCRE2: `\s` there is the White_Space property, which
// PCRE2's `\s` lacks U+0085 of. Exposed for tests.
std::string translate_pattern(std::string_view pattern);

}  // namespace pdctl::engine

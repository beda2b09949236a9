#include "engine/tokenizer_added.h"

#include <algorithm>

#include "engine/unicode_text.h"

namespace pdctl::engine::tok {
namespace {

// The code point that ends just before `pos` (text is valid UTF-8).
char32_t code_point_before(std::string_view text, size_t pos, size_t* start = nullptr) {
  size_t b = pos;
  while (b > 0 && (static_cast<unsigned char>(text[b - 1]) & 0xC0) == 0x80) --b;
  if (b > 0) --b;
  size_t i = b;
  char32_t cp = 0;
  unicode::next_code_point(text, i, cp);
  if (start != nullptr) *start = b;
  return cp;
}

// Start of the run of White_Space that ends at `end` (`\s*$` on text[..end]).
size_t space_run_start(std::string_view text, size_t end, size_t floor) {
  size_t pos = end;
  while (pos > floor) {
    size_t b;
    const char32_t cp = code_point_before(text, pos, &b);
    if (!unicode::is_white_space(cp)) break;
    pos = b;
  }
  return pos;
}

// End of the run of White_Space that starts at `pos` (`^\s*` on text[pos..]).
size_t space_run_end(std::string_view text, size_t pos) {
  while (pos < text.size()) {
    size_t i = pos;
    char32_t cp;
    if (!unicode::next_code_point(text, i, cp) || !unicode::is_white_space(cp)) break;
    pos = i;
  }
  return pos;
}

}  // namespace

void AddedVocabulary::Trie::insert(std::string_view pattern, int32_t token) {
  if (pattern.empty()) return;
  if (nodes.empty()) nodes.emplace_back();
  first[static_cast<unsigned char>(pattern[0])] = true;
  int32_t node = 0;
  for (unsigned char c : pattern) {
    auto& next = nodes[node].next;
    auto it = std::lower_bound(next.begin(), next.end(), c,
                               [](const auto& e, unsigned char b) { return e.first < b; });
    if (it != next.end() && it->first == c) {
      node = it->second;
      continue;
    }
    const auto child = static_cast<int32_t>(nodes.size());
    next.insert(it, {c, child});
    nodes.emplace_back();  // invalidates `next`; not used again below
    node = child;
  }
  nodes[node].token = token;
}

std::pair<int32_t, size_t> AddedVocabulary::Trie::longest(std::string_view text, size_t pos) const {
  std::pair<int32_t, size_t> best{-1, 0};
  if (nodes.empty() || !first[static_cast<unsigned char>(text[pos])]) return best;
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    const auto& next = nodes[node].next;
    auto it = std::lower_bound(next.begin(), next.end(), c,
                               [](const auto& e, unsigned char b) { return e.first < b; });
    if (it == next.end() || it->first != c) break;
    node = it->second;
    if (nodes[node].token >= 0) best = {nodes[node].token, i + 1 - pos};
  }
  return best;
}

void AddedVocabulary::add(AddedToken token) {
  if (token.content.empty()) return;
  auto it = by_id_.find(token.id);
  if (it != by_id_.end()) {
    tokens_[it->second] = std::move(token);
    return;
  }
  by_id_.emplace(token.id, tokens_.size());
  tokens_.push_back(std::move(token));
}

void AddedVocabulary::finalize(const Normalizer* normalizer) {
  raw_ = Trie{};
  norm_ = Trie{};
  by_content_.clear();
  normalized_.assign(tokens_.size(), std::string());
  for (size_t k = 0; k < tokens_.size(); ++k) {
    const AddedToken& t = tokens_[k];
    by_content_[t.content] = t.id;
    if (t.normalized) {
      std::string n = t.content;
      if (normalizer != nullptr) normalizer->normalize(n);
      normalized_[k] = n;
      norm_.insert(n, static_cast<int32_t>(k));
    } else {
      raw_.insert(t.content, static_cast<int32_t>(k));
    }
  }
}

void AddedVocabulary::split(std::string_view text, bool normalized_pass, std::vector<Segment>& out) const {
  out.clear();
  const Trie& trie = normalized_pass ? norm_ : raw_;
  if (trie.nodes.empty() || text.empty()) {
    out.push_back({0, text.size(), -1});
    return;
  }
  size_t done = 0;  // end of the last emitted segment
  size_t pos = 0;
  while (pos < text.size()) {
    auto [k, len] = trie.longest(text, pos);
    if (k < 0) {
      ++pos;
      continue;
    }
    size_t start = pos, stop = pos + len;
    pos = stop;  // the next search starts after this match even when it is discarded
    const AddedToken& t = tokens_[k];
    if (t.single_word) {
      const bool left_ok = start == 0 || !unicode::is_word_char(code_point_before(text, start));
      bool right_ok = stop == text.size();
      if (!right_ok) {
        size_t i = stop;
        char32_t cp;
        right_ok = !unicode::next_code_point(text, i, cp) || !unicode::is_word_char(cp);
      }
      if (!left_ok || !right_ok) continue;
    }
    if (t.lstrip) start = std::max(space_run_start(text, start, 0), done);
    if (t.rstrip) stop = space_run_end(text, stop);
    if (done < start) out.push_back({done, start, -1});
    out.push_back({start, stop, t.id});
    done = stop;
    pos = std::max(pos, stop);
  }
  if (done != text.size()) out.push_back({done, text.size(), -1});
}

const AddedToken* AddedVocabulary::find(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

std::optional<int32_t> AddedVocabulary::find(std::string_view content) const {
  auto it = by_content_.find(content);
  if (it == by_content_.end()) return std::nullopt;
  return it->second;
}

std::string_view AddedVocabulary::decode_text(int32_t id) const {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return {};
  const AddedToken& t = tokens_[it->second];
  if (t.normalized && !normalized_[it->second].empty()) return normalized_[it->second];
  return t.content;
}

}  // namespace pdctl::engine::tok

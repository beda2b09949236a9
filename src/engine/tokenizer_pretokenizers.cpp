// Pre-tokenizers of tokenizer.json: they split a normalized piece into the words the model
// sees (Split with a regex, ByteLevel, Metaspace, Digits, Sequence).
#include <utf8proc.h>

#include <algorithm>
#include <utility>

#include "engine/tokenizer_components.h"
#include "engine/tokenizer_json.h"
#include "engine/unicode_regex.h"
#include "engine/unicode_text.h"

namespace pdctl::engine::tok {
namespace {

constexpr std::string_view kMetaspace = "\xE2\x96\x81";  // ▁

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// `head` + `s` (std::string::insert at 0 trips a GCC 12 -Wrestrict false positive).
std::string prepended(std::string_view head, std::string_view s) {
  std::string out;
  out.reserve(head.size() + s.size());
  out.append(head).append(s);
  return out;
}

struct Span {
  size_t b, e;
  bool is_match;
};

// Hugging Face's NormalizedString::split: turns the match/non-match spans covering a piece
// into the pieces that the behavior keeps.
void split_by_behavior(const PreToken& piece, std::vector<Span>& spans, Behavior behavior,
                       std::vector<PreToken>& out) {
  std::vector<std::pair<size_t, size_t>> kept;
  switch (behavior) {
    case Behavior::kIsolated:
      for (const auto& s : spans) kept.emplace_back(s.b, s.e);
      break;
    case Behavior::kRemoved:
      for (const auto& s : spans)
        if (!s.is_match) kept.emplace_back(s.b, s.e);
      break;
    case Behavior::kContiguous: {
      bool prev_match = false;
      for (const auto& s : spans) {
        if (!kept.empty() && s.is_match == prev_match) {
          kept.back().second = s.e;
        } else {
          kept.emplace_back(s.b, s.e);
        }
        prev_match = s.is_match;
      }
      break;
    }
    case Behavior::kMergedWithPrevious: {
      bool prev_match = false;
      for (const auto& s : spans) {
        if (s.is_match && !prev_match && !kept.empty()) {
          kept.back().second = s.e;
        } else {
          kept.emplace_back(s.b, s.e);
        }
        prev_match = s.is_match;
      }
      break;
    }
    case Behavior::kMergedWithNext: {
      bool prev_match = false;
      for (size_t k = spans.size(); k-- > 0;) {
        const auto& s = spans[k];
        if (s.is_match && !prev_match && !kept.empty()) {
          kept.back().first = s.b;
        } else {
          kept.emplace_back(s.b, s.e);
        }
        prev_match = s.is_match;
      }
      std::reverse(kept.begin(), kept.end());
      break;
    }
  }
  for (auto [b, e] : kept) {
    if (e <= b) continue;
    out.push_back(PreToken{piece.text.substr(b, e - b), piece.at_start && b == 0});
  }
}

// Match spans of a regex, with the gaps between them, covering the whole text.
void regex_spans(const UnicodeRegex& re, bool invert, std::string_view text, std::vector<Span>& spans) {
  std::vector<std::pair<size_t, size_t>> m;
  re.find_all(text, m);
  spans.clear();
  size_t prev = 0;
  for (auto [b, e] : m) {
    if (prev != b) spans.push_back({prev, b, invert});
    spans.push_back({b, e, !invert});
    prev = e;
  }
  if (prev != text.size()) spans.push_back({prev, text.size(), invert});
}

class Split final : public PreTokenizer {
 public:
  Split(UnicodeRegex re, Behavior behavior, bool invert)
      : re_(std::move(re)), behavior_(behavior), invert_(invert) {}
  void pre_tokenize(std::vector<PreToken>& pieces) const override {
    std::vector<PreToken> out;
    out.reserve(pieces.size() * 4);
    std::vector<Span> spans;
    for (const auto& p : pieces) {
      regex_spans(re_, invert_, p.text, spans);
      split_by_behavior(p, spans, behavior_, out);
    }
    pieces = std::move(out);
  }

 private:
  UnicodeRegex re_;
  Behavior behavior_;
  bool invert_;
};

const UnicodeRegex& gpt2_regex() {
  static const UnicodeRegex re =
      UnicodeRegex::compile(
          R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)")
          .value();
  return re;
}

class ByteLevel final : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space), use_regex_(use_regex) {}
  void pre_tokenize(std::vector<PreToken>& pieces) const override {
    if (add_prefix_space_) {
      for (auto& p : pieces)
        if (p.text.empty() || p.text[0] != ' ') p.text = prepended(" ", p.text);
    }
    if (use_regex_) {
      std::vector<PreToken> out;
      std::vector<Span> spans;
      for (const auto& p : pieces) {
        regex_spans(gpt2_regex(), false, p.text, spans);
        split_by_behavior(p, spans, Behavior::kIsolated, out);
      }
      pieces = std::move(out);
    }
    const auto& table = unicode::byte_to_unicode();
    std::string mapped;
    for (auto& p : pieces) {
      mapped.clear();
      for (unsigned char c : p.text) mapped.append(table[c]);
      p.text.swap(mapped);
    }
  }

 private:
  bool add_prefix_space_, use_regex_;
};

enum class PrependScheme { kAlways, kFirst, kNever };

class Metaspace final : public PreTokenizer {
 public:
  Metaspace(std::string replacement, PrependScheme scheme, bool split)
      : rep_(std::move(replacement)), scheme_(scheme), split_(split) {}
  void pre_tokenize(std::vector<PreToken>& pieces) const override {
    std::vector<PreToken> out;
    for (auto& p : pieces) {
      std::string s;
      s.reserve(p.text.size() + 8);
      for (char c : p.text) {
        if (c == ' ') {
          s.append(rep_);
        } else {
          s.push_back(c);
        }
      }
      const bool starts = s.compare(0, rep_.size(), rep_) == 0;
      if (!starts && (scheme_ == PrependScheme::kAlways || (scheme_ == PrependScheme::kFirst && p.at_start))) {
        s = prepended(rep_, s);
      }
      PreToken piece{std::move(s), p.at_start};
      if (!split_) {
        if (!piece.text.empty()) out.push_back(std::move(piece));
        continue;
      }
      // Split before every replacement character (MergedWithNext).
      std::vector<Span> spans;
      size_t prev = 0;
      for (size_t pos = piece.text.find(rep_); pos != std::string::npos;
           pos = piece.text.find(rep_, pos + rep_.size())) {
        if (pos != prev) spans.push_back({prev, pos, false});
        spans.push_back({pos, pos + rep_.size(), true});
        prev = pos + rep_.size();
      }
      if (prev != piece.text.size()) spans.push_back({prev, piece.text.size(), false});
      split_by_behavior(piece, spans, Behavior::kMergedWithNext, out);
    }
    pieces = std::move(out);
  }

 private:
  std::string rep_;
  PrependScheme scheme_;
  bool split_;
};

// Rust's char::is_numeric: general categories Nd, Nl and No.
bool is_numeric(char32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
}

class Digits final : public PreTokenizer {
 public:
  explicit Digits(bool individual) : individual_(individual) {}
  void pre_tokenize(std::vector<PreToken>& pieces) const override {
    std::vector<PreToken> out;
    std::vector<Span> spans;
    for (const auto& p : pieces) {
      spans.clear();
      size_t i = 0, prev = 0;
      char32_t cp;
      while (i < p.text.size()) {
        const size_t start = i;
        unicode::next_code_point(p.text, i, cp);
        if (is_numeric(cp)) {
          if (prev < start) spans.push_back({prev, start, false});
          spans.push_back({start, i, true});
          prev = i;
        }
      }
      if (prev < p.text.size()) spans.push_back({prev, p.text.size(), false});
      split_by_behavior(p, spans, individual_ ? Behavior::kIsolated : Behavior::kContiguous, out);
    }
    pieces = std::move(out);
  }

 private:
  bool individual_;
};

class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> items) : items_(std::move(items)) {}
  void pre_tokenize(std::vector<PreToken>& pieces) const override {
    for (const auto& p : items_) p->pre_tokenize(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> items_;
};

Result<Behavior> parse_behavior(const json& j, const std::string& where) {
  PDCTL_ASSIGN_OR_RETURN(std::string b, get_string(j, "behavior", where));
  if (b == "Removed") return Behavior::kRemoved;
  if (b == "Isolated") return Behavior::kIsolated;
  if (b == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::kMergedWithNext;
  if (b == "Contiguous") return Behavior::kContiguous;
  return Status::corrupt(where + ".behavior: unknown value '" + b + "'");
}

}  // namespace

Result<std::unique_ptr<PreTokenizer>> parse_pre_tokenizer(const json& j, const std::string& where) {
  PDCTL_ASSIGN_OR_RETURN(std::string type, get_string(j, "type", where));
  if (type == "Split") {
    PDCTL_ASSIGN_OR_RETURN(UnicodeRegex re, parse_pattern(j, where));
    PDCTL_ASSIGN_OR_RETURN(Behavior behavior, parse_behavior(j, where));
    PDCTL_ASSIGN_OR_RETURN(bool invert, get_bool_or(j, "invert", where, false));
    return std::unique_ptr<PreTokenizer>(new Split(std::move(re), behavior, invert));
  }
  if (type == "ByteLevel") {
    PDCTL_ASSIGN_OR_RETURN(bool prefix, get_bool_or(j, "add_prefix_space", where, true));
    PDCTL_ASSIGN_OR_RETURN(bool use_regex, get_bool_or(j, "use_regex", where, true));
    return std::unique_ptr<PreTokenizer>(new ByteLevel(prefix, use_regex));
  }
  if (type == "Metaspace") {
    PDCTL_ASSIGN_OR_RETURN(std::string rep, get_string_or(j, "replacement", where, std::string(kMetaspace)));
    if (unicode::code_point_count(rep) != 1) return Status::corrupt(where + ".replacement is not one character");
    PDCTL_ASSIGN_OR_RETURN(std::string scheme_name, get_string_or(j, "prepend_scheme", where, "always"));
    PrependScheme scheme = PrependScheme::kAlways;
    if (scheme_name == "first") {
      scheme = PrependScheme::kFirst;
    } else if (scheme_name == "never") {
      scheme = PrependScheme::kNever;
    } else if (scheme_name != "always") {
      return Status::corrupt(where + ".prepend_scheme: unknown value '" + scheme_name + "'");
    }
    // Older files say add_prefix_space instead.
    PDCTL_ASSIGN_OR_RETURN(bool prefix, get_bool_or(j, "add_prefix_space", where, true));
    if (!prefix) scheme = PrependScheme::kNever;
    PDCTL_ASSIGN_OR_RETURN(bool split, get_bool_or(j, "split", where, true));
    return std::unique_ptr<PreTokenizer>(new Metaspace(std::move(rep), scheme, split));
  }
  if (type == "Digits") {
    PDCTL_ASSIGN_OR_RETURN(bool individual, get_bool_or(j, "individual_digits", where, false));
    return std::unique_ptr<PreTokenizer>(new Digits(individual));
  }
  if (type == "Sequence") {
    const json* list = member(j, "pretokenizers");
    if (list == nullptr || !list->is_array()) return Status::corrupt(where + ".pretokenizers is not a list");
    std::vector<std::unique_ptr<PreTokenizer>> items;
    for (size_t i = 0; i < list->size(); ++i) {
      PDCTL_ASSIGN_OR_RETURN(auto p, parse_pre_tokenizer((*list)[i], where + ".pretokenizers[" + std::to_string(i) + "]"));
      items.push_back(std::move(p));
    }
    return std::unique_ptr<PreTokenizer>(new SequencePreTokenizer(std::move(items)));
  }
  return Status::unsupported(where + ": pre-tokenizer type '" + type + "' is not supported");
}

Result<std::unique_ptr<PreTokenizer>> make_split_byte_level(std::string_view regex) {
  PDCTL_ASSIGN_OR_RETURN(UnicodeRegex re, UnicodeRegex::compile(regex));
  std::vector<std::unique_ptr<PreTokenizer>> items;
  items.push_back(std::make_unique<Split>(std::move(re), Behavior::kIsolated, false));
  items.push_back(std::make_unique<ByteLevel>(false, false));
  return std::unique_ptr<PreTokenizer>(new SequencePreTokenizer(std::move(items)));
}

}  // namespace pdctl::engine::tok

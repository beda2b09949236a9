// Normalizers of tokenizer.json: they rewrite a piece of text before pre-tokenization.
// Offsets are not tracked (the engine needs ids, not alignments), so each one is a plain
// string transformation with Hugging Face's semantics.
#include <utf8proc.h>

#include <utility>

#include "engine/tokenizer_components.h"
#include "engine/tokenizer_json.h"
#include "engine/unicode_regex.h"
#include "engine/unicode_text.h"

namespace pdctl::engine::tok {
namespace {

class UnicodeForm final : public Normalizer {
 public:
  explicit UnicodeForm(unicode::NormalForm form) : form_(form) {}
  void normalize(std::string& s) const override {
    auto r = unicode::normalize(s, form_);
    if (r.has_value()) s = std::move(r).value();  // input is valid UTF-8, so this holds
  }

 private:
  unicode::NormalForm form_;
};

class Lowercase final : public Normalizer {
 public:
  void normalize(std::string& s) const override { s = unicode::lowercase(s); }
};

class StripSpaces final : public Normalizer {
 public:
  StripSpaces(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string& s) const override {
    size_t b = 0, e = s.size();
    if (left_) {
      size_t i = 0;
      char32_t cp;
      while (i < s.size()) {
        const size_t start = i;
        if (!unicode::next_code_point(s, i, cp) || !unicode::is_white_space(cp)) {
          b = start;
          break;
        }
        b = i;
      }
    }
    if (right_) {
      // Walk forward remembering where the last non-space ends.
      size_t i = b, last = b;
      char32_t cp;
      while (i < s.size()) {
        const bool ok = unicode::next_code_point(s, i, cp);
        if (!ok || !unicode::is_white_space(cp)) last = i;
      }
      e = last;
    }
    s = s.substr(b, e - b);
  }

 private:
  bool left_, right_;
};

// Removes combining marks (general category Mn), as Hugging Face's StripAccents does after NFD.
class StripAccents final : public Normalizer {
 public:
  void normalize(std::string& s) const override {
    std::string out;
    out.reserve(s.size());
    size_t i = 0;
    char32_t cp;
    while (i < s.size()) {
      const size_t start = i;
      const bool ok = unicode::next_code_point(s, i, cp);
      if (ok && utf8proc_category(static_cast<utf8proc_int32_t>(cp)) == UTF8PROC_CATEGORY_MN) continue;
      out.append(s, start, i - start);
    }
    s = std::move(out);
  }
};

class Prepend final : public Normalizer {
 public:
  explicit Prepend(std::string p) : prepend_(std::move(p)) {}
  void normalize(std::string& s) const override {
    if (!s.empty()) s.insert(0, prepend_);
  }

 private:
  std::string prepend_;
};

class Replace final : public Normalizer {
 public:
  Replace(UnicodeRegex re, std::string content) : re_(std::move(re)), content_(std::move(content)) {}
  void normalize(std::string& s) const override {
    std::vector<std::pair<size_t, size_t>> m;
    re_.find_all(s, m);
    if (m.empty()) return;
    std::string out;
    out.reserve(s.size() + m.size() * content_.size());
    size_t prev = 0;
    for (auto [b, e] : m) {
      out.append(s, prev, b - prev);
      out.append(content_);
      prev = e;
    }
    out.append(s, prev, std::string::npos);
    s = std::move(out);
  }

 private:
  UnicodeRegex re_;
  std::string content_;
};

// Every byte becomes its byte-level code point (used by some byte-level BPE models instead of
// the ByteLevel pre-tokenizer).
class ByteLevelNormalizer final : public Normalizer {
 public:
  void normalize(std::string& s) const override {
    const auto& table = unicode::byte_to_unicode();
    std::string out;
    out.reserve(s.size() * 2);
    for (unsigned char c : s) out.append(table[c]);
    s = std::move(out);
  }
};

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> items) : items_(std::move(items)) {}
  void normalize(std::string& s) const override {
    for (const auto& n : items_) n->normalize(s);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> items_;
};

}  // namespace

Result<UnicodeRegex> parse_pattern(const json& j, const std::string& where) {
  const json* p = member(j, "pattern");
  if (p == nullptr || !p->is_object()) return Status::corrupt(where + ".pattern is missing");
  if (const json* s = member(*p, "String"); s != nullptr && s->is_string()) {
    auto re = UnicodeRegex::compile(s->get<std::string>(), /*literal=*/true);
    if (!re) return std::move(re).status().with_context(where + ".pattern");
    return re;
  }
  if (const json* r = member(*p, "Regex"); r != nullptr && r->is_string()) {
    auto re = UnicodeRegex::compile(r->get<std::string>());
    if (!re) return std::move(re).status().with_context(where + ".pattern");
    return re;
  }
  return Status::corrupt(where + ".pattern has neither String nor Regex");
}

Result<std::unique_ptr<Normalizer>> parse_normalizer(const json& j, const std::string& where) {
  PDCTL_ASSIGN_OR_RETURN(std::string type, get_string(j, "type", where));
  if (type == "NFC") return std::unique_ptr<Normalizer>(new UnicodeForm(unicode::NormalForm::kNFC));
  if (type == "NFD") return std::unique_ptr<Normalizer>(new UnicodeForm(unicode::NormalForm::kNFD));
  if (type == "NFKC") return std::unique_ptr<Normalizer>(new UnicodeForm(unicode::NormalForm::kNFKC));
  if (type == "NFKD") return std::unique_ptr<Normalizer>(new UnicodeForm(unicode::NormalForm::kNFKD));
  if (type == "Lowercase") return std::unique_ptr<Normalizer>(new Lowercase());
  if (type == "StripAccents") return std::unique_ptr<Normalizer>(new StripAccents());
  if (type == "ByteLevel") return std::unique_ptr<Normalizer>(new ByteLevelNormalizer());
  if (type == "Strip") {
    PDCTL_ASSIGN_OR_RETURN(bool left, get_bool_or(j, "strip_left", where, true));
    PDCTL_ASSIGN_OR_RETURN(bool right, get_bool_or(j, "strip_right", where, true));
    return std::unique_ptr<Normalizer>(new StripSpaces(left, right));
  }
  if (type == "Prepend") {
    PDCTL_ASSIGN_OR_RETURN(std::string p, get_string(j, "prepend", where));
    return std::unique_ptr<Normalizer>(new Prepend(std::move(p)));
  }
  if (type == "Replace") {
    PDCTL_ASSIGN_OR_RETURN(UnicodeRegex re, parse_pattern(j, where));
    PDCTL_ASSIGN_OR_RETURN(std::string content, get_string(j, "content", where));
    return std::unique_ptr<Normalizer>(new Replace(std::move(re), std::move(content)));
  }
  if (type == "Sequence") {
    const json* list = member(j, "normalizers");
    if (list == nullptr || !list->is_array()) return Status::corrupt(where + ".normalizers is not a list");
    std::vector<std::unique_ptr<Normalizer>> items;
    for (size_t i = 0; i < list->size(); ++i) {
      PDCTL_ASSIGN_OR_RETURN(auto n, parse_normalizer((*list)[i], where + ".normalizers[" + std::to_string(i) + "]"));
      items.push_back(std::move(n));
    }
    return std::unique_ptr<Normalizer>(new SequenceNormalizer(std::move(items)));
  }
  return Status::unsupported(where + ": normalizer type '" + type + "' is not supported");
}

std::unique_ptr<Normalizer> make_nfc_normalizer() {
  return std::make_unique<UnicodeForm>(unicode::NormalForm::kNFC);
}

std::unique_ptr<Normalizer> make_sentencepiece_normalizer(bool prepend) {
  std::vector<std::unique_ptr<Normalizer>> items;
  if (prepend) items.push_back(std::make_unique<Prepend>("\xE2\x96\x81"));
  auto space = UnicodeRegex::compile(" ", /*literal=*/true);
  items.push_back(std::make_unique<Replace>(std::move(space).value(), "\xE2\x96\x81"));
  return std::make_unique<SequenceNormalizer>(std::move(items));
}

}  // namespace pdctl::engine::tok

// Decoders of tokenizer.json: token strings back to text, with Hugging Face's `decode_chain`
// semantics (each decoder maps a list of token strings to a new list; the caller joins it).
#include <utility>

#include "engine/tokenizer_components.h"
#include "engine/tokenizer_json.h"
#include "engine/unicode_regex.h"
#include "engine/unicode_text.h"

namespace pdctl::engine::tok {
namespace {

constexpr std::string_view kMetaspace = "\xE2\x96\x81";  // ▁

// Byte-level code points back to bytes; a token with any other character is taken as its own
// UTF-8 (added tokens such as "<|im_start|>" usually consist of alphabet characters anyway).
bool byte_level_bytes(std::string_view token, std::string& out) {
  const size_t mark = out.size();
  size_t i = 0;
  char32_t cp;
  while (i < token.size()) {
    const int b = unicode::next_code_point(token, i, cp) ? unicode::unicode_to_byte(cp) : -1;
    if (b < 0) {
      out.resize(mark);
      out.append(token);
      return false;
    }
    out.push_back(static_cast<char>(b));
  }
  return true;
}

class ByteLevelDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const auto& t : tokens) byte_level_bytes(t, bytes);
    tokens.assign(1, unicode::utf8_lossy(bytes));
  }
  void raw_piece(std::string& token) const override {
    std::string bytes;
    byte_level_bytes(token, bytes);
    token = std::move(bytes);
  }
};

class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(UnicodeRegex re, std::string content) : re_(std::move(re)), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) raw_piece(t);
  }
  void raw_piece(std::string& token) const override {
    std::vector<std::pair<size_t, size_t>> m;
    re_.find_all(token, m);
    if (m.empty()) return;
    std::string out;
    size_t prev = 0;
    for (auto [b, e] : m) {
      out.append(token, prev, b - prev);
      out.append(content_);
      prev = e;
    }
    out.append(token, prev, std::string::npos);
    token = std::move(out);
  }

 private:
  UnicodeRegex re_;
  std::string content_;
};

// Runs of <0xXX> tokens become their bytes when those form valid UTF-8, else one U+FFFD per
// byte (Hugging Face's rule, which differs from lossy conversion).
class ByteFallbackDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens.size());
    std::string run;
    size_t run_len = 0;
    auto flush = [&] {
      if (run_len == 0) return;
      if (unicode::is_valid_utf8(run)) {
        out.push_back(run);
      } else {
        for (size_t k = 0; k < run_len; ++k) out.emplace_back(unicode::kReplacementUtf8);
      }
      run.clear();
      run_len = 0;
    };
    for (auto& t : tokens) {
      const int b = parse_byte_piece(t);
      if (b >= 0) {
        run.push_back(static_cast<char>(b));
        ++run_len;
        continue;
      }
      flush();
      out.push_back(std::move(t));
    }
    flush();
    tokens = std::move(out);
  }
  void raw_piece(std::string& token) const override {
    const int b = parse_byte_piece(token);
    if (b >= 0) token.assign(1, static_cast<char>(b));
  }
  bool joins_byte_runs() const override { return true; }
};

class FuseDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
  void raw_piece(std::string&) const override {}
};

// Removes up to `start` leading and `stop` trailing copies of one character from each token.
class StripDecoder final : public Decoder {
 public:
  StripDecoder(std::string content, size_t start, size_t stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      size_t b = 0;
      for (size_t k = 0; k < start_ && t.compare(b, content_.size(), content_) == 0; ++k) b += content_.size();
      size_t e = t.size();
      for (size_t k = 0; k < stop_ && e >= b + content_.size() &&
                         t.compare(e - content_.size(), content_.size(), content_) == 0;
           ++k) {
        e -= content_.size();
      }
      t = t.substr(b, e - b);
    }
  }
  void raw_piece(std::string&) const override {}

 private:
  std::string content_;
  size_t start_, stop_;
};

// ▁ becomes a space; in the first token it is dropped instead (unless nothing was prepended).
class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(std::string rep, bool prepends) : rep_(std::move(rep)), prepends_(prepends) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) replace(tokens[i], i == 0 && prepends_ ? "" : " ");
  }
  void raw_piece(std::string& token) const override { replace(token, " "); }

 private:
  void replace(std::string& t, std::string_view with) const {
    std::string out;
    size_t prev = 0;
    for (size_t pos = t.find(rep_); pos != std::string::npos; pos = t.find(rep_, prev)) {
      out.append(t, prev, pos - prev);
      out.append(with);
      prev = pos + rep_.size();
    }
    if (prev == 0) return;
    out.append(t, prev, std::string::npos);
    t = std::move(out);
  }
  std::string rep_;
  bool prepends_;
};

class BytePieceDecoder final : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (auto& t : tokens) {
      raw_piece(t);
      bytes += t;
    }
    tokens.assign(1, unicode::utf8_lossy(bytes));
  }
  void raw_piece(std::string& token) const override {
    const int b = parse_byte_piece(token);
    if (b >= 0) token.assign(1, static_cast<char>(b));
  }
};

class SequenceDecoder final : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> items) : items_(std::move(items)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& d : items_) d->decode_chain(tokens);
  }
  void raw_piece(std::string& token) const override {
    for (const auto& d : items_) d->raw_piece(token);
  }
  bool joins_byte_runs() const override {
    for (const auto& d : items_)
      if (d->joins_byte_runs()) return true;
    return false;
  }

 private:
  std::vector<std::unique_ptr<Decoder>> items_;
};

}  // namespace

int parse_byte_piece(std::string_view t) {
  if (t.size() != 6 || t[0] != '<' || t[1] != '0' || t[2] != 'x' || t[5] != '>') return -1;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  const int hi = hex(t[3]), lo = hex(t[4]);
  if (hi < 0 || lo < 0) return -1;
  return hi * 16 + lo;
}

Result<std::unique_ptr<Decoder>> parse_decoder(const json& j, const std::string& where) {
  PDCTL_ASSIGN_OR_RETURN(std::string type, get_string(j, "type", where));
  if (type == "ByteLevel") return std::unique_ptr<Decoder>(new ByteLevelDecoder());
  if (type == "ByteFallback") return std::unique_ptr<Decoder>(new ByteFallbackDecoder());
  if (type == "Fuse") return std::unique_ptr<Decoder>(new FuseDecoder());
  if (type == "Replace") {
    PDCTL_ASSIGN_OR_RETURN(UnicodeRegex re, parse_pattern(j, where));
    PDCTL_ASSIGN_OR_RETURN(std::string content, get_string(j, "content", where));
    return std::unique_ptr<Decoder>(new ReplaceDecoder(std::move(re), std::move(content)));
  }
  if (type == "Strip") {
    PDCTL_ASSIGN_OR_RETURN(std::string content, get_string(j, "content", where));
    if (unicode::code_point_count(content) != 1) return Status::corrupt(where + ".content is not one character");
    PDCTL_ASSIGN_OR_RETURN(int64_t start, get_int_or(j, "start", where, 0));
    PDCTL_ASSIGN_OR_RETURN(int64_t stop, get_int_or(j, "stop", where, 0));
    if (start < 0 || stop < 0) return Status::corrupt(where + ": negative start or stop");
    return std::unique_ptr<Decoder>(new StripDecoder(std::move(content), static_cast<size_t>(start),
                                                     static_cast<size_t>(stop)));
  }
  if (type == "Metaspace") {
    PDCTL_ASSIGN_OR_RETURN(std::string rep, get_string_or(j, "replacement", where, std::string(kMetaspace)));
    PDCTL_ASSIGN_OR_RETURN(std::string scheme, get_string_or(j, "prepend_scheme", where, "always"));
    PDCTL_ASSIGN_OR_RETURN(bool prefix, get_bool_or(j, "add_prefix_space", where, true));
    return std::unique_ptr<Decoder>(new MetaspaceDecoder(std::move(rep), scheme != "never" && prefix));
  }
  if (type == "Sequence") {
    const json* list = member(j, "decoders");
    if (list == nullptr || !list->is_array()) return Status::corrupt(where + ".decoders is not a list");
    std::vector<std::unique_ptr<Decoder>> items;
    for (size_t i = 0; i < list->size(); ++i) {
      PDCTL_ASSIGN_OR_RETURN(auto d, parse_decoder((*list)[i], where + ".decoders[" + std::to_string(i) + "]"));
      items.push_back(std::move(d));
    }
    return std::unique_ptr<Decoder>(new SequenceDecoder(std::move(items)));
  }
  return Status::unsupported(where + ": decoder type '" + type + "' is not supported");
}

std::unique_ptr<Decoder> make_byte_level_decoder() { return std::make_unique<ByteLevelDecoder>(); }

std::unique_ptr<Decoder> make_sentencepiece_decoder(bool strip_space) {
  std::vector<std::unique_ptr<Decoder>> items;
  items.push_back(std::make_unique<ReplaceDecoder>(UnicodeRegex::compile(kMetaspace, true).value(), " "));
  items.push_back(std::make_unique<ByteFallbackDecoder>());
  items.push_back(std::make_unique<FuseDecoder>());
  if (strip_space) items.push_back(std::make_unique<StripDecoder>(" ", 1, 0));
  return std::make_unique<SequenceDecoder>(std::move(items));
}

std::unique_ptr<Decoder> make_byte_piece_decoder() { return std::make_unique<BytePieceDecoder>(); }

}  // namespace pdctl::engine::tok

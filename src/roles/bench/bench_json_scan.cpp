#include "roles/bench/bench_json_scan.h"

#include <charconv>
#include <cmath>
#include <cstring>

namespace pdctl::roles {
namespace {

constexpr int kMaxDepth = 256;

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The validating pass: each function returns the position after what it read, or
// nullptr when the text is not JSON there.
class Validator {
 public:
  Validator(const char* begin, const char* end) : begin_(begin), end_(end) {}

  const char* value(const char* p, int depth) {
    if (p == end_) return fail(p, "unexpected end");
    switch (*p) {
      case '{': return object(p, depth + 1);
      case '[': return array(p, depth + 1);
      case '"': return string(p);
      case 't': return literal(p, "true");
      case 'f': return literal(p, "false");
      case 'n': return literal(p, "null");
      default: return number(p);
    }
  }
  const char* ws(const char* p) const {
    while (p != end_ && is_ws(*p)) ++p;
    return p;
  }
  size_t error_offset() const { return static_cast<size_t>(error_at_ - begin_); }
  const char* error() const { return error_; }
  const char* fail(const char* p, const char* why) {
    error_at_ = p;
    error_ = why;
    return nullptr;
  }

 private:
  const char* object(const char* p, int depth) {
    if (depth > kMaxDepth) return fail(p, "nested too deeply");
    p = ws(p + 1);
    if (p != end_ && *p == '}') return p + 1;
    for (;;) {
      if (p == end_ || *p != '"') return fail(p, "expected a string key");
      p = string(p);
      if (!p) return nullptr;
      p = ws(p);
      if (p == end_ || *p != ':') return fail(p, "expected ':'");
      p = ws(p + 1);
      p = value(p, depth);
      if (!p) return nullptr;
      p = ws(p);
      if (p != end_ && *p == ',') {
        p = ws(p + 1);
        continue;
      }
      if (p != end_ && *p == '}') return p + 1;
      return fail(p, "expected ',' or '}'");
    }
  }
  const char* array(const char* p, int depth) {
    if (depth > kMaxDepth) return fail(p, "nested too deeply");
    p = ws(p + 1);
    if (p != end_ && *p == ']') return p + 1;
    for (;;) {
      p = value(p, depth);
      if (!p) return nullptr;
      p = ws(p);
      if (p != end_ && *p == ',') {
        p = ws(p + 1);
        continue;
      }
      if (p != end_ && *p == ']') return p + 1;
      return fail(p, "expected ',' or ']'");
    }
  }
  const char* string(const char* p) {
    ++p;
    while (p != end_) {
      unsigned char c = static_cast<unsigned char>(*p);
      if (c == '"') return p + 1;
      if (c < 0x20) return fail(p, "control character in string");
      if (c != '\\') {
        ++p;
        continue;
      }
      if (++p == end_) break;
      switch (*p) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
          ++p;
          break;
        case 'u':
          for (int i = 1; i <= 4; ++i) {
            if (p + i >= end_ || hex_value(p[i]) < 0) return fail(p, "bad \\u escape");
          }
          p += 5;
          break;
        default: return fail(p, "bad escape");
      }
    }
    return fail(p, "unterminated string");
  }
  const char* literal(const char* p, std::string_view word) {
    if (static_cast<size_t>(end_ - p) < word.size() || std::memcmp(p, word.data(), word.size()) != 0) {
      return fail(p, "invalid literal");
    }
    return p + word.size();
  }
  const char* number(const char* p) {
    const char* start = p;
    if (p != end_ && *p == '-') ++p;
    if (p == end_ || !is_digit(*p)) return fail(start, "invalid value");
    if (*p == '0') {
      ++p;
    } else {
      while (p != end_ && is_digit(*p)) ++p;
    }
    if (p != end_ && *p == '.') {
      ++p;
      if (p == end_ || !is_digit(*p)) return fail(p, "digit expected after '.'");
      while (p != end_ && is_digit(*p)) ++p;
    }
    if (p != end_ && (*p == 'e' || *p == 'E')) {
      ++p;
      if (p != end_ && (*p == '+' || *p == '-')) ++p;
      if (p == end_ || !is_digit(*p)) return fail(p, "digit expected in exponent");
      while (p != end_ && is_digit(*p)) ++p;
    }
    return p;
  }

  const char* begin_;
  const char* end_;
  const char* error_at_ = nullptr;
  const char* error_ = "";
};

// The end of the valid value starting at p (validation already done).
const char* skip_string(const char* p, const char* end) {
  ++p;
  // memchr to the next quote; it closes the string unless an odd run of backslashes
  // escapes it.
  while (p < end) {
    const auto* q = static_cast<const char*>(std::memchr(p, '"', static_cast<size_t>(end - p)));
    if (!q) return end;
    const char* b = q;
    while (b > p && b[-1] == '\\') --b;
    if ((q - b) % 2 == 0) return q + 1;
    p = q + 1;
  }
  return end;
}

const char* skip_value(const char* p, const char* end) {
  if (*p == '"') return skip_string(p, end);
  if (*p == '{' || *p == '[') {
    int depth = 0;
    while (p != end) {
      char c = *p;
      if (c == '"') {
        p = skip_string(p, end);
        continue;
      }
      if (c == '{' || c == '[') ++depth;
      if (c == '}' || c == ']') {
        if (--depth == 0) return p + 1;
      }
      ++p;
    }
    return end;
  }
  while (p != end && *p != ',' && *p != '}' && *p != ']' && !is_ws(*p)) ++p;
  return p;
}

const char* skip_ws(const char* p, const char* end) {
  while (p != end && is_ws(*p)) ++p;
  return p;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xc0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xe0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out.push_back(static_cast<char>(0xf0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

uint32_t read_hex4(const char* p) {
  return static_cast<uint32_t>(hex_value(p[0]) << 12 | hex_value(p[1]) << 8 |
                               hex_value(p[2]) << 4 | hex_value(p[3]));
}

// Decodes the inside of a valid string literal (without its quotes), appending to out.
void unescape(std::string_view in, std::string& out) {
  const char* p = in.data();
  const char* end = p + in.size();
  while (p != end) {
    const char* run = p;
    while (p != end && *p != '\\') ++p;
    out.append(run, static_cast<size_t>(p - run));
    if (p == end) break;
    char e = p[1];
    p += 2;
    switch (e) {
      case 'b': out.push_back('\b'); break;
      case 'f': out.push_back('\f'); break;
      case 'n': out.push_back('\n'); break;
      case 'r': out.push_back('\r'); break;
      case 't': out.push_back('\t'); break;
      case 'u': {
        uint32_t cp = read_hex4(p);
        p += 4;
        if (cp >= 0xd800 && cp < 0xdc00 && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
          uint32_t lo = read_hex4(p + 2);
          if (lo >= 0xdc00 && lo < 0xe000) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            p += 6;
          }
        }
        if (cp >= 0xd800 && cp < 0xe000) cp = 0xfffd;  // a lone surrogate
        append_utf8(out, cp);
        break;
      }
      default: out.push_back(e); break;  // '"', '\\', '/'
    }
  }
}

}  // namespace

Result<JsonView> JsonView::parse(std::string_view text) {
  const char* begin = text.data();
  const char* end = begin + text.size();
  Validator v(begin, end);
  const char* start = v.ws(begin);
  const char* stop = v.value(start, 0);
  if (stop) {
    const char* rest = v.ws(stop);
    if (rest == end) return of(std::string_view(start, static_cast<size_t>(stop - start)));
    v.fail(rest, "trailing characters after the value");
  }
  return Status::corrupt("invalid JSON at offset " + std::to_string(v.error_offset()) + ": " +
                         v.error());
}

JsonView JsonView::of(std::string_view raw) {
  JsonKind kind = JsonKind::kNumber;
  switch (raw.front()) {
    case '{': kind = JsonKind::kObject; break;
    case '[': kind = JsonKind::kArray; break;
    case '"': kind = JsonKind::kString; break;
    case 't': kind = JsonKind::kTrue; break;
    case 'f': kind = JsonKind::kFalse; break;
    case 'n': kind = JsonKind::kNull; break;
    default: break;
  }
  return JsonView(kind, raw);
}

std::optional<JsonView> JsonView::get(std::string_view key) const {
  std::optional<JsonView> found;
  get_all(std::span<const std::string_view>(&key, 1), &found);
  return found;
}

void JsonView::get_all(std::span<const std::string_view> keys, std::optional<JsonView>* out) const {
  for (size_t k = 0; k < keys.size(); ++k) out[k].reset();
  if (!is_object()) return;
  const char* end = raw_.data() + raw_.size();
  const char* p = skip_ws(raw_.data() + 1, end);
  std::string decoded;
  while (p != end && *p == '"') {
    const char* key_end = skip_string(p, end);
    std::string_view raw_key(p + 1, static_cast<size_t>(key_end - p - 2));
    if (raw_key.find('\\') != std::string_view::npos) {
      decoded.clear();
      unescape(raw_key, decoded);
      raw_key = decoded;
    }
    p = skip_ws(key_end, end) + 1;  // past ':'
    p = skip_ws(p, end);
    const char* value_end = skip_value(p, end);
    for (size_t k = 0; k < keys.size(); ++k) {
      if (raw_key == keys[k]) out[k] = of(std::string_view(p, static_cast<size_t>(value_end - p)));
    }
    p = skip_ws(value_end, end);
    if (p != end && *p == ',') p = skip_ws(p + 1, end);
  }
}

std::optional<JsonView> JsonView::at(size_t index) const {
  if (!is_array()) return std::nullopt;
  const char* end = raw_.data() + raw_.size();
  const char* p = skip_ws(raw_.data() + 1, end);
  for (size_t i = 0; p != end && *p != ']'; ++i) {
    const char* value_end = skip_value(p, end);
    if (i == index) return of(std::string_view(p, static_cast<size_t>(value_end - p)));
    p = skip_ws(value_end, end);
    if (p != end && *p == ',') p = skip_ws(p + 1, end);
  }
  return std::nullopt;
}

bool JsonView::get_string(std::string& out) const {
  out.clear();
  return append_string(out);
}

bool JsonView::append_string(std::string& out) const {
  if (!is_string()) return false;
  unescape(raw_.substr(1, raw_.size() - 2), out);
  return true;
}

size_t JsonView::string_size() const {
  if (!is_string()) return 0;
  std::string_view in = raw_.substr(1, raw_.size() - 2);
  if (in.find('\\') == std::string_view::npos) return in.size();
  std::string tmp;
  unescape(in, tmp);
  return tmp.size();
}

std::optional<double> JsonView::as_double() const {
  if (kind_ != JsonKind::kNumber) return std::nullopt;
  double v = 0;
  auto r = std::from_chars(raw_.data(), raw_.data() + raw_.size(), v);
  if (r.ec != std::errc()) return std::nullopt;
  return v;
}

std::optional<int64_t> JsonView::as_int() const {
  if (kind_ != JsonKind::kNumber) return std::nullopt;
  int64_t v = 0;
  auto r = std::from_chars(raw_.data(), raw_.data() + raw_.size(), v);
  if (r.ec == std::errc() && r.ptr == raw_.data() + raw_.size()) return v;
  std::optional<double> d = as_double();
  if (!d || !std::isfinite(*d) || std::trunc(*d) != *d || std::fabs(*d) > 9.0e15) return std::nullopt;
  return static_cast<int64_t>(*d);
}

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  auto escape_unit = [&](uint32_t u) {
    out += "\\u";
    out.push_back(kHex[(u >> 12) & 0xf]);
    out.push_back(kHex[(u >> 8) & 0xf]);
    out.push_back(kHex[(u >> 4) & 0xf]);
    out.push_back(kHex[u & 0xf]);
  };
  out.push_back('"');
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p != end) {
    unsigned char c = *p;
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out.push_back(static_cast<char>(c));
      ++p;
      continue;
    }
    if (c < 0x80) {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default: escape_unit(c); break;
      }
      ++p;
      continue;
    }
    // Decode one UTF-8 sequence; anything malformed is one U+FFFD per bad byte.
    int len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
    uint32_t cp = 0xfffd;
    int used = 1;
    if (len != 0 && end - p >= len && c < 0xf5) {
      uint32_t v = c & (0xff >> (len + 1));
      bool ok = true;
      for (int i = 1; i < len; ++i) {
        if ((p[i] & 0xc0) != 0x80) ok = false;
        v = (v << 6) | (p[i] & 0x3f);
      }
      static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
      if (ok && v >= kMin[len] && v <= 0x10ffff && !(v >= 0xd800 && v < 0xe000)) {
        cp = v;
        used = len;
      }
    }
    p += used;
    if (cp >= 0x10000) {
      cp -= 0x10000;
      escape_unit(0xd800 + (cp >> 10));
      escape_unit(0xdc00 + (cp & 0x3ff));
    } else {
      escape_unit(cp);
    }
  }
  out.push_back('"');
}

}  // namespace pdctl::roles

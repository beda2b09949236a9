#define PCRE2_CODE_UNIT_WIDTH 8
#include "engine/unicode_regex.h"

#include <pcre2.h>

#include <cctype>

#include "engine/unicode_text.h"

namespace pdctl::engine {

struct UnicodeRegex::Code {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Code() { pcre2_code_free(code); }
};

namespace {
struct MatchDataDeleter {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};
struct JitStackDeleter {
  void operator()(pcre2_jit_stack* s) const { pcre2_jit_stack_free(s); }
};
struct MatchContextDeleter {
  void operator()(pcre2_match_context* c) const { pcre2_match_context_free(c); }
};

std::string escape_literal(std::string_view s) {
  // \Q...\E would break on a literal "\E"; escaping every non-alphanumeric ASCII is simpler.
  std::string out;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x80 && !std::isalnum(u)) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

// A per-thread JIT stack: the default 32 KiB is too small for `\s+(?!\S)` over long runs of
// whitespace; 1 MiB is.
pcre2_match_context* thread_match_context() {
  thread_local std::unique_ptr<pcre2_jit_stack, JitStackDeleter> stack(
      pcre2_jit_stack_create(32 * 1024, 1024 * 1024, nullptr));
  thread_local std::unique_ptr<pcre2_match_context, MatchContextDeleter> ctx(
      pcre2_match_context_create(nullptr));
  thread_local bool assigned = false;
  if (!assigned && ctx && stack) {
    pcre2_jit_stack_assign(ctx.get(), nullptr, stack.get());
    assigned = true;
  }
  return ctx.get();
}
}  // namespace

std::string translate_pattern(std::string_view p) {
  static constexpr std::string_view kExtra = "\\x{85}";
  std::string out;
  out.reserve(p.size() + 16);
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char n = p[i + 1];
      if (n == 's') {
        if (in_class) {
          out.append("\\s").append(kExtra);
        } else {
          out.append("[\\s").append(kExtra).append("]");
        }
      } else if (n == 'S' && !in_class) {
        out.append("[^\\s").append(kExtra).append("]");
      } else {
        out.push_back(c);
        out.push_back(n);
      }
      ++i;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out.push_back(c);
      // A ']' right after '[' or '[^' is a literal member, not the end of the class.
      if (i + 1 < p.size() && p[i + 1] == '^') out.push_back(p[++i]);
      if (i + 1 < p.size() && p[i + 1] == ']') out.push_back(p[++i]);
      continue;
    }
    if (in_class && c == '[' && i + 1 < p.size() && p[i + 1] == ':') {
      // A POSIX class such as [:alpha:] inside a class.
      const size_t end = p.find(":]", i + 2);
      if (end != std::string_view::npos) {
        out.append(p.substr(i, end + 2 - i));
        i = end + 1;
        continue;
      }
    }
    if (in_class && c == ']') in_class = false;
    out.push_back(c);
  }
  return out;
}

Result<UnicodeRegex> UnicodeRegex::compile(std::string_view pattern, bool literal) {
  const std::string source = literal ? escape_literal(pattern) : translate_pattern(pattern);
  int err = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(source.data()), source.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &offset,
                                   nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    return Status::invalid_argument("bad regular expression '" + std::string(pattern) +
                                    "' at offset " + std::to_string(offset) + ": " +
                                    reinterpret_cast<const char*>(msg));
  }
  auto owned = std::make_shared<Code>();
  owned->code = code;
  // JIT is an optimisation: where it is unavailable the interpreter gives the same matches.
  owned->jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  UnicodeRegex re;
  re.code_ = std::move(owned);
  re.pattern_ = std::string(pattern);
  re.literal_ = literal && !pattern.empty();
  return re;
}

void UnicodeRegex::find_all(std::string_view text,
                            std::vector<std::pair<size_t, size_t>>& out) const {
  out.clear();
  if (text.empty()) return;
  if (literal_) {
    // Replace "▁" and friends: a substring search is much cheaper than a regex match.
    for (size_t pos = text.find(pattern_); pos != std::string_view::npos; pos = text.find(pattern_, pos + pattern_.size())) {
      out.emplace_back(pos, pos + pattern_.size());
    }
    return;
  }
  std::unique_ptr<pcre2_match_data, MatchDataDeleter> md(
      pcre2_match_data_create_from_pattern(code_->code, nullptr));
  pcre2_match_context* ctx = thread_match_context();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos < text.size()) {
    int rc = -1;
    if (code_->jit) {
      rc = pcre2_jit_match(code_->code, subject, text.size(), pos, 0, md.get(), ctx);
    }
    if (!code_->jit || rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      rc = pcre2_match(code_->code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, md.get(),
                       nullptr);
    }
    if (rc < 0) break;  // no further match (or a limit hit: the rest stays unmatched)
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    size_t b = ov[0], e = ov[1];
    if (e > b) {
      out.emplace_back(b, e);
      pos = e;
    } else {
      // An empty match: step over one whole code point.
      size_t i = b;
      char32_t cp;
      unicode::next_code_point(text, i, cp);
      pos = i;
    }
  }
}

}  // namespace pdctl::engine

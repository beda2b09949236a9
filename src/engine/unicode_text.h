#pragma once
// UTF-8 and Unicode helpers for the tokenizers: decoding code points, Rust-compatible lossy
// conversion, the White_Space and word-character classes, normalization forms (utf8proc) and
// the GPT-2 byte-level alphabet.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace pdctl::engine::unicode {

inline constexpr char32_t kReplacementChar = 0xFFFD;
inline constexpr std::string_view kReplacementUtf8 = "\xEF\xBF\xBD";

// Decodes the code point at `s[i]` and advances `i`. On an invalid or truncated sequence it
// returns false and advances past its maximal ill-formed subpart (Unicode's recommended
// practice, which Rust's lossy conversion follows).
bool next_code_point(std::string_view s, size_t& i, char32_t& cp);
void append_utf8(std::string& out, char32_t cp);
std::string utf8_of(char32_t cp);
bool is_valid_utf8(std::string_view s);
// Invalid sequences become U+FFFD, one per maximal ill-formed subpart: the same text as
// Rust's `String::from_utf8_lossy`, which Hugging Face's byte-level decoder uses.
std::string utf8_lossy(std::string_view bytes);
// Number of code points (invalid bytes count one each).
size_t code_point_count(std::string_view s);

// The Unicode White_Space property: what `\s` means to Oniguruma and Rust's regex, and what
// `char::is_whitespace` tests.
bool is_white_space(char32_t cp);
// `\w` as Rust's regex has it: letters, marks, decimal numbers, connector punctuation and
// Join_Control.
bool is_word_char(char32_t cp);

enum class NormalForm { kNFC, kNFD, kNFKC, kNFKD };
// The text in the given normalization form; an error only when utf8proc refuses the input.
Result<std::string> normalize(std::string_view s, NormalForm form);
// Unicode lower case of every code point (simple case mapping).
std::string lowercase(std::string_view s);

// The GPT-2 byte-level alphabet: every byte has a printable code point, as UTF-8.
const std::array<std::string, 256>& byte_to_unicode();
// The byte a code point of that alphabet stands for, or -1.
int unicode_to_byte(char32_t cp);

}  // namespace pdctl::engine::unicode

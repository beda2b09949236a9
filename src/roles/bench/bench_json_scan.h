#pragma once
// A read-only view of JSON text that answers "what is at this key" without building a
// document: one validating pass, then lookups that skip over what they do not need. The
// benchmark reads a few fields of every streamed chunk, so this avoids a DOM (and its
// allocations) per token.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"

namespace pdctl::roles {

enum class JsonKind { kNull, kFalse, kTrue, kNumber, kString, kArray, kObject };

class JsonView {
 public:
  // Checks that `text` is exactly one well-formed JSON value (RFC 8259; surrounding
  // whitespace allowed, nesting at most 256 deep). The view points into `text`.
  static Result<JsonView> parse(std::string_view text);

  JsonKind kind() const { return kind_; }
  bool is_object() const { return kind_ == JsonKind::kObject; }
  bool is_array() const { return kind_ == JsonKind::kArray; }
  bool is_string() const { return kind_ == JsonKind::kString; }
  std::string_view raw() const { return raw_; }

  // The member `key` of an object (the last one if repeated, as Python's json does);
  // nullopt if this is not an object or has no such key.
  std::optional<JsonView> get(std::string_view key) const;
  // Several members in one walk over the object: out[i] receives keys[i]'s value (the
  // last if repeated) or nullopt. For the hot path, where get() per key would rescan.
  void get_all(std::span<const std::string_view> keys, std::optional<JsonView>* out) const;
  // Element `index` of an array; nullopt if not an array or too short.
  std::optional<JsonView> at(size_t index) const;

  // A string that is not "" (Python's truthiness of a str).
  bool is_nonempty_string() const { return is_string() && raw_.size() > 2; }
  // The decoded string (UTF-8), replacing `out`'s contents; false if not a string.
  bool get_string(std::string& out) const;
  // The decoded string appended to `out`; false if not a string.
  bool append_string(std::string& out) const;
  // Byte length of the decoded string; 0 if not a string.
  size_t string_size() const;
  // The number as an integer (integral values like 12.0 included); nullopt otherwise.
  std::optional<int64_t> as_int() const;
  std::optional<double> as_double() const;

 private:
  JsonView(JsonKind kind, std::string_view raw) : kind_(kind), raw_(raw) {}
  static JsonView of(std::string_view raw);  // raw is a valid value without whitespace

  JsonKind kind_ = JsonKind::kNull;
  std::string_view raw_;
};

// Appends `s` as a JSON string literal the way Python's json.dumps writes it
// (ensure_ascii: non-ASCII as \uXXXX, surrogate pairs above U+FFFF); invalid UTF-8
// becomes U+FFFD.
void append_json_string(std::string& out, std::string_view s);

}  // namespace pdctl::roles

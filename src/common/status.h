#pragma once
// Errors as values at module boundaries: Status (a code and a message) and Result<T>
// (a value or a Status). Exceptions are for start-up only.
#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace pdctl {

enum class Errc {
  kOk = 0,
  kInvalidArgument,   // the caller's input is wrong (maps to HTTP 400)
  kNotFound,          // a named thing does not exist (404)
  kOutOfRange,        // a value is outside what is allowed (400)
  kUnsupported,       // valid but not implemented here (400/501)
  kCorrupt,           // a file or message is malformed (model files, wire data)
  kIo,                // the operating system refused (open, read, mmap, socket)
  kResourceExhausted, // a pool or queue is full (429/503)
  kTimeout,           // a deadline passed (504)
  kCancelled,         // the caller gave up (client disconnect, abort)
  kUnavailable,       // a peer is down or not ready (503)
  kAlreadyExists,     // a duplicate id (room, rid)
  kInternal,          // a bug: an invariant did not hold (500)
};

const char* errc_name(Errc code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Errc code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return {}; }
  static Status invalid_argument(std::string m) { return {Errc::kInvalidArgument, std::move(m)}; }
  static Status not_found(std::string m) { return {Errc::kNotFound, std::move(m)}; }
  static Status out_of_range(std::string m) { return {Errc::kOutOfRange, std::move(m)}; }
  static Status unsupported(std::string m) { return {Errc::kUnsupported, std::move(m)}; }
  static Status corrupt(std::string m) { return {Errc::kCorrupt, std::move(m)}; }
  static Status io(std::string m) { return {Errc::kIo, std::move(m)}; }
  static Status resource_exhausted(std::string m) { return {Errc::kResourceExhausted, std::move(m)}; }
  static Status timeout(std::string m) { return {Errc::kTimeout, std::move(m)}; }
  static Status cancelled(std::string m) { return {Errc::kCancelled, std::move(m)}; }
  static Status unavailable(std::string m) { return {Errc::kUnavailable, std::move(m)}; }
  static Status already_exists(std::string m) { return {Errc::kAlreadyExists, std::move(m)}; }
  static Status internal(std::string m) { return {Errc::kInternal, std::move(m)}; }

  bool is_ok() const { return code_ == Errc::kOk; }
  explicit operator bool() const { return is_ok(); }
  Errc code() const { return code_; }
  const std::string& message() const { return message_; }

  // Adds the stage or object that failed in front of the message ("loading x.gguf: ...").
  Status with_context(std::string_view context) const& {
    if (is_ok()) return *this;
    return {code_, std::string(context) + ": " + message_};
  }
  Status with_context(std::string_view context) && {
    if (is_ok()) return std::move(*this);
    message_.insert(0, std::string(context) + ": ");
    return std::move(*this);
  }
  std::string to_string() const;

 private:
  Errc code_ = Errc::kOk;
  std::string message_;
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    assert(!std::get<Status>(v_).is_ok() && "a Result needs a value or an error");
  }

  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Status& status() const& {
    static const Status kOk;
    return has_value() ? kOk : std::get<1>(v_);
  }
  Status status() && { return has_value() ? Status() : std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace pdctl

#define PDCTL_CONCAT_INNER(a, b) a##b
#define PDCTL_CONCAT(a, b) PDCTL_CONCAT_INNER(a, b)

// Returns the Status from the enclosing function when `expr` (a Status) is an error.
#define PDCTL_RETURN_IF_ERROR(expr)          \
  do {                                       \
    ::pdctl::Status pdctl_st_ = (expr);      \
    if (!pdctl_st_.is_ok()) return pdctl_st_; \
  } while (0)

// `PDCTL_ASSIGN_OR_RETURN(auto x, f());` binds the value or returns the error.
#define PDCTL_ASSIGN_OR_RETURN(lhs, expr)                                  \
  auto PDCTL_CONCAT(pdctl_r_, __LINE__) = (expr);                          \
  if (!PDCTL_CONCAT(pdctl_r_, __LINE__).has_value())                       \
    return std::move(PDCTL_CONCAT(pdctl_r_, __LINE__)).status();           \
  lhs = std::move(PDCTL_CONCAT(pdctl_r_, __LINE__)).value()

#pragma once
// HTTP vocabulary shared by the server and the client: header lists, the request a handler
// sees, reason phrases and the one JSON error body every error of the stack uses.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pdctl::net {

// ASCII case-insensitive equality (header names, tokens).
bool iequals(std::string_view a, std::string_view b);

// Header fields in arrival order; names compare case-insensitively. Repeated names are
// kept as separate fields.
class Headers {
 public:
  using Field = std::pair<std::string, std::string>;

  Headers() = default;
  Headers(std::initializer_list<Field> fields) : fields_(fields) {}

  void add(std::string name, std::string value) {
    fields_.emplace_back(std::move(name), std::move(value));
  }
  // Replaces every field called `name` with one.
  void set(std::string_view name, std::string value);
  void remove(std::string_view name);
  // The first field called `name`, or nullptr.
  const std::string* find(std::string_view name) const;
  // The first value of `name`, or "" when absent.
  std::string_view get(std::string_view name) const;
  bool has(std::string_view name) const { return find(name) != nullptr; }
  // True when a comma-separated value of `name` holds `token` (case-insensitive), as in
  // "Connection: keep-alive, Upgrade" or "Expect: 100-continue".
  bool has_token(std::string_view name, std::string_view token) const;

  size_t size() const { return fields_.size(); }
  bool empty() const { return fields_.empty(); }
  void clear() { fields_.clear(); }
  auto begin() const { return fields_.begin(); }
  auto end() const { return fields_.end(); }

 private:
  std::vector<Field> fields_;
};

// A parsed request as a handler sees it. Valid for as long as any copy of its Response.
struct Request {
  std::string_view method;  // "GET", "POST"... (static storage)
  std::string target;       // the request-target as received: "/v1/x?stream=1"
  Headers headers;
  std::string body;         // whole body, de-chunked
  int http_minor = 1;       // 1 for HTTP/1.1, 0 for HTTP/1.0
  std::vector<std::pair<std::string, std::string>> params;  // path parameters, decoded

  std::string_view path() const;   // target up to '?'
  std::string_view query() const;  // after '?' (without it), "" when absent
  // A decoded query parameter, or nullopt when absent or badly encoded.
  std::optional<std::string> query_param(std::string_view name) const;
  // A path parameter of the route ("{url}"), or "" when the route has none by that name.
  std::string_view param(std::string_view name) const;
};

// "OK", "Not Found"... ("Unknown" for codes outside the table).
const char* status_reason(int status);

// The OpenAI-style error type for a status: invalid_request_error (4xx),
// authentication_error (401), rate_limit_error (429), server_error (5xx).
std::string_view default_error_type(int status);

// {"error":{"message":MESSAGE,"type":TYPE,"code":STATUS}}; `type` defaults as above.
std::string error_json(int status, std::string_view message, std::string_view type = {});

}  // namespace pdctl::net

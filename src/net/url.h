#pragma once
// URLs of upstreams ("http://host:port/path"), percent-encoding and query strings.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace pdctl::net {

// Where a TCP connection goes. `host` is a name or an IP literal (IPv6 without brackets).
struct Endpoint {
  std::string host;
  uint16_t port = 0;

  // "host:port", with brackets around an IPv6 literal: the Host header's form.
  std::string to_string() const;
  bool operator==(const Endpoint&) const = default;
};

struct Url {
  Endpoint endpoint;
  std::string target = "/";  // path and query: what goes on the request line
};

// Parses "http://host[:port][/path][?query]" (port 80 by default; "[::1]" for IPv6); a URL
// without a scheme is taken as http. https, user info and fragments are refused.
Result<Url> parse_url(std::string_view text);

// Decodes %XX escapes; with `plus_is_space` (query strings) '+' becomes ' '. A '%' not
// followed by two hex digits is an error.
Result<std::string> percent_decode(std::string_view text, bool plus_is_space = false);

// Escapes every byte but ALPHA / DIGIT / "-._~" (for a URL inside a path segment).
std::string percent_encode(std::string_view text);

// The decoded value of the first `name` in "a=1&b=x%20y" ("" for "flag" without '='), or
// nullopt when absent or badly encoded.
std::optional<std::string> query_param(std::string_view query, std::string_view name);

}  // namespace pdctl::net

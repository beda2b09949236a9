#pragma once
// Optional API-key check: "Authorization: Bearer KEY" on the routes a role chooses.
#include <string>
#include <string_view>

#include "net/http_server.h"

namespace pdctl::net {

// True when the request carries "Authorization: Bearer <key>" (scheme case-insensitive;
// the key compared in constant time).
bool bearer_token_matches(const Request& req, std::string_view key);

// Wraps `next`: requests without the right token get 401 with the JSON error body and
// "WWW-Authenticate: Bearer"; an empty `key` disables the check.
Handler require_bearer(std::string key, Handler next);

}  // namespace pdctl::net

#include "net/auth.h"

namespace pdctl::net {

bool bearer_token_matches(const Request& req, std::string_view key) {
  std::string_view auth = req.headers.get("Authorization");
  constexpr std::string_view kScheme = "bearer ";
  if (auth.size() < kScheme.size() || !iequals(auth.substr(0, kScheme.size()), kScheme)) return false;
  std::string_view token = auth.substr(kScheme.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
  // No early exit on the first differing byte: the time taken says nothing about the key.
  unsigned diff = token.size() == key.size() ? 0u : 1u;
  for (size_t i = 0; i < key.size(); ++i) {
    char t = i < token.size() ? token[i] : 0;
    diff |= static_cast<unsigned>(static_cast<unsigned char>(t) ^ static_cast<unsigned char>(key[i]));
  }
  return diff == 0;
}

Handler require_bearer(std::string key, Handler next) {
  if (key.empty()) return next;
  return [key = std::move(key), next = std::move(next)](const Request& req, Response resp) {
    if (!bearer_token_matches(req, key)) {
      resp.send(401, error_json(401, "missing or invalid API key (Authorization: Bearer KEY)"),
                Headers{{"WWW-Authenticate", "Bearer"}});
      return;
    }
    next(req, std::move(resp));
  };
}

}  // namespace pdctl::net

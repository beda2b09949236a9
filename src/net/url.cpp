#include "net/url.h"

#include <charconv>

namespace pdctl::net {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool starts_with_icase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != prefix[i]) return false;
  }
  return true;
}

}  // namespace

std::string Endpoint::to_string() const {
  std::string out;
  out.reserve(host.size() + 8);
  bool v6 = host.find(':') != std::string::npos;
  if (v6) out += '[';
  out += host;
  if (v6) out += ']';
  out += ':';
  out += std::to_string(port);
  return out;
}

Result<Url> parse_url(std::string_view text) {
  std::string_view rest = text;
  if (starts_with_icase(rest, "http://")) {
    rest.remove_prefix(7);
  } else if (starts_with_icase(rest, "https://")) {
    return Status::unsupported("https is not supported: " + std::string(text));
  } else if (rest.find("://") != std::string_view::npos) {
    return Status::invalid_argument("unsupported URL scheme: " + std::string(text));
  }
  if (rest.find('#') != std::string_view::npos) {
    return Status::invalid_argument("URL fragments are not allowed: " + std::string(text));
  }
  size_t slash = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, slash);
  std::string_view target = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  if (authority.find('@') != std::string_view::npos) {
    return Status::unsupported("user info in URLs is not supported: " + std::string(text));
  }

  Url url;
  std::string_view host;
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return Status::invalid_argument("unterminated IPv6 literal in URL: " + std::string(text));
    }
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return Status::invalid_argument("bad URL authority: " + std::string(text));
      port = after.substr(1);
    }
  } else {
    size_t colon = authority.rfind(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return Status::invalid_argument("an IPv6 host needs brackets: " + std::string(text));
    }
  }
  if (host.empty()) return Status::invalid_argument("URL without a host: " + std::string(text));
  url.endpoint.host = std::string(host);
  url.endpoint.port = 80;
  if (!port.empty() || authority.ends_with(':')) {
    unsigned value = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || value == 0 || value > 65535) {
      return Status::invalid_argument("bad port in URL: " + std::string(text));
    }
    url.endpoint.port = static_cast<uint16_t>(value);
  }
  if (target.empty()) {
    url.target = "/";
  } else if (target.front() == '?') {
    url.target = "/" + std::string(target);
  } else {
    url.target = std::string(target);
  }
  return url;
}

Result<std::string> percent_decode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size()) return Status::invalid_argument("truncated percent escape");
      int h = hex_value(text[i + 1]);
      int l = hex_value(text[i + 2]);
      if (h < 0 || l < 0) return Status::invalid_argument("bad percent escape");
      out += static_cast<char>(h * 16 + l);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::string percent_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size() * 3);
  for (unsigned char c : text) {
    bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::optional<std::string> query_param(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    size_t eq = pair.find('=');
    std::string_view key = pair.substr(0, eq);
    std::string_view value = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    auto decoded_key = percent_decode(key, true);
    if (decoded_key && *decoded_key == name) {
      auto decoded = percent_decode(value, true);
      if (!decoded) return std::nullopt;
      return std::move(decoded).value();
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

}  // namespace pdctl::net

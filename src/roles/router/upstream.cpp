#include "roles/router/upstream.h"

#include "net/sse.h"

namespace pdctl::router {

Result<Upstream> parse_upstream(std::string_view worker_url) {
  PDCTL_ASSIGN_OR_RETURN(net::Url url, net::parse_url(worker_url));
  Upstream up;
  up.endpoint = std::move(url.endpoint);
  up.prefix = std::move(url.target);
  while (!up.prefix.empty() && up.prefix.back() == '/') up.prefix.pop_back();
  return up;
}

Result<const Upstream*> UpstreamCache::get(const std::string& worker_url) {
  auto it = cache_.find(worker_url);
  if (it != cache_.end()) return &it->second;
  PDCTL_ASSIGN_OR_RETURN(Upstream up, parse_upstream(worker_url));
  return &cache_.emplace(worker_url, std::move(up)).first->second;
}

TransportError classify_transport(const Status& st) {
  switch (st.code()) {
    case Errc::kOk: return TransportError::kNone;
    case Errc::kTimeout: return TransportError::kTimeout;
    case Errc::kUnavailable:
      // net reports ECONNREFUSED as kUnavailable with libuv's text; a refused connect is
      // the one failure that proves nothing listens there (the core marks it unhealthy).
      return st.message().find("connection refused") != std::string::npos ? TransportError::kRefused
                                                                          : TransportError::kReset;
    default: return TransportError::kOther;
  }
}

AttemptResult attempt_result(const Status& st, int http_status) {
  if (st.is_ok()) return AttemptResult::http(http_status);
  return AttemptResult::transport_error(classify_transport(st));
}

namespace {

bool hop_by_hop(std::string_view name) {
  using net::iequals;
  return iequals(name, "Connection") || iequals(name, "Keep-Alive") || iequals(name, "TE") ||
         iequals(name, "Trailer") || iequals(name, "Upgrade") || iequals(name, "Transfer-Encoding") ||
         iequals(name, "Proxy-Connection") || iequals(name, "Proxy-Authenticate") ||
         iequals(name, "Proxy-Authorization");
}

}  // namespace

net::Headers forward_request_headers(const net::Headers& in) {
  net::Headers out;
  for (const auto& [name, value] : in) {
    if (hop_by_hop(name) || net::iequals(name, "Host") || net::iequals(name, "Content-Length") ||
        net::iequals(name, "Expect")) {
      continue;
    }
    out.add(name, value);
  }
  return out;
}

net::Headers forward_response_headers(const net::Headers& in) {
  net::Headers out;
  for (const auto& [name, value] : in) {
    if (hop_by_hop(name) || net::iequals(name, "Content-Length") || net::iequals(name, "Date") ||
        net::iequals(name, "Server")) {
      continue;
    }
    out.add(name, value);
  }
  return out;
}

bool is_event_stream(const net::Headers& h) {
  std::string_view ct = h.get("Content-Type");
  constexpr std::string_view kSse = "text/event-stream";
  return ct.size() >= kSse.size() && net::iequals(ct.substr(0, kSse.size()), kSse);
}

std::string sse_error_event(int status, std::string_view message) {
  return net::sse_event(net::error_json(status, message));
}

int gateway_status(TransportError e) { return e == TransportError::kTimeout ? 504 : 502; }

}  // namespace pdctl::router

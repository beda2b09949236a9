// Pure helpers: URLs, percent-encoding, query strings, routes, SSE, headers, error bodies.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "net/http_types.h"
#include "net/route_table.h"
#include "net/sse.h"
#include "net/url.h"

using namespace pdctl::net;

TEST_CASE("url: hosts, ports, IPv6 literals, targets") {
  auto u = parse_url("http://127.0.0.1:30001/generate?x=1");
  REQUIRE(u);
  CHECK(u->endpoint.host == "127.0.0.1");
  CHECK(u->endpoint.port == 30001);
  CHECK(u->target == "/generate?x=1");

  u = parse_url("http://[::1]:8080");
  REQUIRE(u);
  CHECK(u->endpoint.host == "::1");
  CHECK(u->endpoint.port == 8080);
  CHECK(u->target == "/");
  CHECK(u->endpoint.to_string() == "[::1]:8080");

  u = parse_url("HTTP://localhost");
  REQUIRE(u);
  CHECK(u->endpoint.port == 80);
  CHECK(u->endpoint.to_string() == "localhost:80");

  u = parse_url("worker-3:30002?q");
  REQUIRE(u);
  CHECK(u->endpoint.host == "worker-3");
  CHECK(u->target == "/?q");

  CHECK(parse_url("https://a:1").status().code() == pdctl::Errc::kUnsupported);
  CHECK_FALSE(parse_url("http://:80"));
  CHECK_FALSE(parse_url("http://a:0"));
  CHECK_FALSE(parse_url("http://a:65536"));
  CHECK_FALSE(parse_url("http://a:x1"));
  CHECK_FALSE(parse_url("http://a:"));
  CHECK_FALSE(parse_url("http://[::1"));
  CHECK_FALSE(parse_url("http://::1:80"));
  CHECK_FALSE(parse_url("http://u@a:1"));
  CHECK_FALSE(parse_url("ftp://a"));
}

TEST_CASE("url: percent-encoding round trip and query parameters") {
  std::string url = "http://10.0.0.1:30001/x y";
  std::string enc = percent_encode(url);
  CHECK(enc == "http%3A%2F%2F10.0.0.1%3A30001%2Fx%20y");
  CHECK(percent_decode(enc).value() == url);
  CHECK_FALSE(percent_decode("%4"));
  CHECK_FALSE(percent_decode("%zz"));
  CHECK(percent_decode("a+b").value() == "a+b");
  CHECK(percent_decode("a+b", true).value() == "a b");

  CHECK(query_param("a=1&b=x%20y&c", "b").value() == "x y");
  CHECK(query_param("a=1&b=x%20y&c", "c").value() == "");
  CHECK(query_param("a=1&b=2", "z") == std::nullopt);
  CHECK(query_param("a=%zz", "a") == std::nullopt);
  CHECK(query_param("", "a") == std::nullopt);
}

TEST_CASE("routes: literals, parameters, rest parameters, 404 vs 405") {
  RouteTable t;
  t.add("GET", "/health", 0);
  t.add("POST", "/generate", 1);
  t.add("DELETE", "/workers/{url}", 2);
  t.add("GET", "/workers/{url}/load", 3);
  t.add("GET", "/static/{path...}", 4);
  t.add("HEAD", "/health", 5);

  auto m = t.match("GET", "/health");
  CHECK(m.outcome == RouteTable::Outcome::kFound);
  CHECK(m.id == 0);
  m = t.match("DELETE", "/workers/http%3A%2F%2Fa%3A1");
  REQUIRE(m.outcome == RouteTable::Outcome::kFound);
  CHECK(m.id == 2);
  CHECK(m.params.at(0).second == "http://a:1");
  m = t.match("GET", "/workers/w1/load");
  CHECK(m.id == 3);
  CHECK(t.match("GET", "/workers/").outcome == RouteTable::Outcome::kNotFound);
  CHECK(t.match("DELETE", "/workers/a/b").outcome == RouteTable::Outcome::kNotFound);
  m = t.match("GET", "/static/a/b/c");
  CHECK(m.params.at(0).second == "a/b/c");
  CHECK(t.match("GET", "/static/").outcome == RouteTable::Outcome::kNotFound);
  m = t.match("POST", "/health");
  CHECK(m.outcome == RouteTable::Outcome::kMethodNotAllowed);
  CHECK(m.allow == "GET, HEAD");
  m = t.match("GET", "/workers/x");
  CHECK(m.outcome == RouteTable::Outcome::kMethodNotAllowed);
  CHECK(m.allow == "DELETE");
  CHECK(t.match("GET", "/nope").outcome == RouteTable::Outcome::kNotFound);
  CHECK(t.match("DELETE", "/workers/%zz").outcome == RouteTable::Outcome::kBadParam);

  CHECK_THROWS_AS(t.add("GET", "no-slash", 9), std::invalid_argument);
  CHECK_THROWS_AS(t.add("GET", "/a/{rest...}/b", 9), std::invalid_argument);
  CHECK_THROWS_AS(t.add("GET", "/a/x{y}", 9), std::invalid_argument);
  CHECK_THROWS_AS(t.add("GET", "/a/{}", 9), std::invalid_argument);
}

TEST_CASE("sse: formatting") {
  CHECK(sse_event(R"({"a":1})") == "data: {\"a\":1}\n\n");
  CHECK(sse_event("l1\nl2\r\nl3") == "data: l1\ndata: l2\ndata: l3\n\n");
  CHECK(kSseDone == "data: [DONE]\n\n");
}

TEST_CASE("sse: parser handles events split anywhere, multi-line data, comments, CRLF") {
  std::string stream =
      ": keep-alive comment\n"
      "data: {\"x\":1}\n\n"
      "event: update\r\nid: 7\r\ndata: line1\r\ndata:line2\r\n\r\n"
      "retry: 100\n"
      "data\n\n"
      "event: empty\n\n"  // no data: not dispatched
      "data: last\r\r"
      "data: [DONE]\n\n";
  std::vector<SseEvent> expected_events;
  // Every split point, and byte-by-byte, must give the same events.
  auto parse_in = [&](size_t step) {
    SseParser p;
    std::vector<SseEvent> out;
    for (size_t i = 0; i < stream.size(); i += step) {
      REQUIRE(p.feed(std::string_view(stream).substr(i, step), [&](const SseEvent& e) { out.push_back(e); }).is_ok());
    }
    CHECK_FALSE(p.has_partial());
    return out;
  };
  auto whole = parse_in(stream.size());
  REQUIRE(whole.size() == 5);
  CHECK(whole[0].data == "{\"x\":1}");
  CHECK(whole[0].event.empty());
  CHECK(whole[1].event == "update");
  CHECK(whole[1].id == "7");
  CHECK(whole[1].data == "line1\nline2");
  CHECK(whole[2].data.empty());
  CHECK(whole[3].data == "last");
  CHECK(whole[4].data == "[DONE]");
  for (size_t step : {1, 2, 3, 5, 7, 13}) {
    CAPTURE(step);
    auto got = parse_in(step);
    REQUIRE(got.size() == whole.size());
    for (size_t i = 0; i < got.size(); ++i) {
      CHECK(got[i].data == whole[i].data);
      CHECK(got[i].event == whole[i].event);
    }
  }
}

TEST_CASE("sse: a line ends at its first CR or LF, whichever comes first in a piece") {
  SseParser p;
  std::vector<std::string> data;
  auto collect = [&](const SseEvent& e) { data.push_back(e.data); };
  // CR alone, then a long line ended by LF, then CRLF; all in one piece.
  std::string long_line(300, 'y');
  REQUIRE(p.feed("data: a\rdata: " + long_line + "\n\r\ndata: b\r\n\n", collect).is_ok());
  REQUIRE(data.size() == 2);
  CHECK(data[0] == "a\n" + long_line);
  CHECK(data[1] == "b");
  CHECK_FALSE(p.has_partial());
}

TEST_CASE("sse: an event larger than the limit is an error") {
  SseParser p(64);
  auto st = p.feed("data: " + std::string(100, 'x'), [](const SseEvent&) {});
  CHECK(st.code() == pdctl::Errc::kResourceExhausted);
  CHECK_FALSE(p.feed("\n\n", [](const SseEvent&) {}).is_ok());
}

TEST_CASE("headers and error bodies") {
  Headers h{{"Content-Type", "text/plain"}, {"connection", "Keep-Alive, Upgrade"}};
  CHECK(h.get("content-type") == "text/plain");
  CHECK(h.has_token("Connection", "upgrade"));
  CHECK_FALSE(h.has_token("Connection", "close"));
  h.set("CONTENT-TYPE", "a/b");
  CHECK(h.size() == 2);
  CHECK(h.get("Content-Type") == "a/b");
  h.remove("connection");
  CHECK(h.size() == 1);

  auto j = nlohmann::json::parse(error_json(413, "too \"big\"\n"));
  CHECK(j["error"]["code"] == 413);
  CHECK(j["error"]["type"] == "invalid_request_error");
  CHECK(j["error"]["message"] == "too \"big\"\n");
  CHECK(nlohmann::json::parse(error_json(503, "x"))["error"]["type"] == "server_error");
  CHECK(nlohmann::json::parse(error_json(401, "x"))["error"]["type"] == "authentication_error");
  CHECK(nlohmann::json::parse(error_json(400, "bad \xff byte"))["error"]["message"].is_string());
  CHECK(status_reason(431) == std::string("Request Header Fields Too Large"));
}

TEST_CASE("parsers: random input never crashes") {
  uint64_t seed = 42;
  auto next = [&] {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return seed >> 33;
  };
  const char alphabet[] = "http:/[]:%0aZ?&=+:\r\n data:event:id:{}.";
  for (int i = 0; i < 20000; ++i) {
    std::string s;
    size_t n = next() % 40;
    for (size_t k = 0; k < n; ++k) s += alphabet[next() % (sizeof alphabet - 1)];
    (void)parse_url(s);
    (void)percent_decode(s, true);
    (void)query_param(s, "a");
    SseParser p(256);
    (void)p.feed(s, [](const SseEvent&) {});
  }
}

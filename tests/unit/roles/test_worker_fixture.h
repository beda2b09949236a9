#pragma once
// The worker API in-process: a WorkerApi and its HttpServer on a LoopThread, over a
// FakeEngine, with blocking HTTP helpers (a raw socket client) and an SSE splitter.
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "net/http_server.h"
#include "net/net_test_util.h"
#include "roles/worker/worker_metrics.h"
#include "roles/worker/worker_server.h"
#include "test_worker_fake_engine.h"

namespace workertest {

using nlohmann::json;

inline roles::WorkerOptions test_worker_options() {
  roles::WorkerOptions o;
  o.model_path = "fake-model";
  return o;
}

struct HttpReply {
  int status = 0;
  net::Headers headers;
  std::string body;
  bool complete = false;
  json parsed() const {
    json j = json::parse(body, nullptr, false);
    return j;
  }
};

// The data payloads of an SSE body ("[DONE]" kept as is).
inline std::vector<std::string> sse_payloads(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) break;
    std::string event = body.substr(pos, end - pos);
    pos = end + 2;
    if (event.rfind("data: ", 0) == 0) out.push_back(event.substr(6));
  }
  return out;
}

// The JSON events of an SSE body, checking that it ends with exactly one [DONE].
inline std::vector<json> sse_json(const std::string& body) {
  std::vector<json> out;
  auto payloads = sse_payloads(body);
  REQUIRE_MESSAGE(!payloads.empty(), body);
  CHECK_MESSAGE(payloads.back() == "[DONE]", body);
  for (size_t i = 0; i + 1 < payloads.size(); ++i) {
    json j = json::parse(payloads[i], nullptr, false);
    REQUIRE_MESSAGE(!j.is_discarded(), payloads[i]);
    out.push_back(std::move(j));
  }
  return out;
}

struct WorkerFixture {
  std::unique_ptr<FakeEngine> engine;
  nettest::LoopThread lt;
  std::unique_ptr<worker::WorkerMetrics> metrics;
  std::unique_ptr<worker::WorkerApi> api;
  std::unique_ptr<net::HttpServer> server;
  uint16_t port = 0;

  explicit WorkerFixture(FakeEngineOptions eo = {}, roles::WorkerOptions wo = test_worker_options(),
                         bool attach = true, net::ServerOptions so = {})
      : engine(std::make_unique<FakeEngine>(std::move(eo))) {
    lt.call([&] {
      metrics = std::make_unique<worker::WorkerMetrics>(wo.served_model_name.empty() ? wo.model_path
                                                                                      : wo.served_model_name);
      api = std::make_unique<worker::WorkerApi>(lt.loop(), wo, *metrics);
      server = std::make_unique<net::HttpServer>(lt.loop(), so);
      api->add_routes(*server);
      Status st = server->listen();
      REQUIRE_MESSAGE(st.is_ok(), st.to_string());
      port = server->port();
      if (attach) api->set_engine(engine.get());
    });
  }
  ~WorkerFixture() {
    lt.call([&] { api->detach_engine(); });
    engine->shutdown();  // final chunks reach the (still running) loop and are dropped there
    lt.call([&] {
      server.reset();
      api.reset();
      metrics.reset();
    });
  }
  WorkerFixture(const WorkerFixture&) = delete;
  WorkerFixture& operator=(const WorkerFixture&) = delete;

  void attach() {
    lt.call([&] { api->set_engine(engine.get()); });
  }

  HttpReply request(std::string_view method, std::string_view path, std::string_view body = {},
                    std::string_view extra_headers = {}) {
    nettest::RawClient c(port);
    REQUIRE(c.connected());
    std::string req = std::string(method) + " " + std::string(path) + " HTTP/1.1\r\nHost: t\r\n";
    if (!body.empty() || method == "POST" || method == "PUT") {
      req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    }
    req += extra_headers;
    req += "\r\n";
    req += body;
    REQUIRE(c.send(req));
    nettest::RawResponse r = c.read_response();
    return HttpReply{r.status, r.headers, r.body, r.complete};
  }
  HttpReply post(std::string_view path, const json& body, std::string_view extra_headers = {}) {
    return request("POST", path, body.dump(), extra_headers);
  }
  HttpReply get(std::string_view path, std::string_view extra_headers = {}) {
    return request("GET", path, {}, extra_headers);
  }
};

// Checks the OpenAI error shape and returns the message.
inline std::string error_message(const HttpReply& r, int status) {
  CHECK_MESSAGE(r.status == status, r.body);
  json j = r.parsed();
  REQUIRE_MESSAGE(j.is_object(), r.body);
  REQUIRE_MESSAGE(j.contains("error"), r.body);
  CHECK(j["error"]["message"].is_string());
  CHECK(j["error"]["type"].is_string());
  CHECK(j["error"].contains("code"));
  return j["error"]["message"].is_string() ? j["error"]["message"].get<std::string>() : std::string();
}

}  // namespace workertest

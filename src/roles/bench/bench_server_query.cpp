#include "roles/bench/bench_server_query.h"

#include <cstdlib>

#include <nlohmann/json.hpp>

#include "net/event_loop.h"

namespace pdctl::roles {
namespace {

using json = nlohmann::ordered_json;

json parse_object(std::string_view body) {
  json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
  return doc.is_object() ? doc : json();
}

// A PD router answers /get_server_info with {"prefill": [...], "decode": [...]}; sglang
// reads the first decode worker's.
const json& through_decode(const json& doc) {
  auto it = doc.find("decode");
  if (it != doc.end() && it->is_array() && !it->empty() && (*it)[0].is_object()) return (*it)[0];
  return doc;
}

void add_path(const json& doc, const char* key, ServerTokenizerHints& hints) {
  auto it = doc.find(key);
  if (it == doc.end() || !it->is_string()) return;
  std::string path = it->get<std::string>();
  if (path.empty()) return;
  for (const auto& seen : hints.paths) {
    if (seen == path) return;
  }
  hints.paths.push_back(std::move(path));
}

}  // namespace

Result<ServerTarget> server_target(const std::string& base_url) {
  PDCTL_ASSIGN_OR_RETURN(net::Url url, net::parse_url(base_url));
  ServerTarget t;
  t.endpoint = std::move(url.endpoint);
  std::string_view path(url.target);
  path = path.substr(0, path.find('?'));
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  t.prefix = std::string(path);
  t.headers = auth_headers();
  return t;
}

net::Headers auth_headers() {
  net::Headers h;
  const char* key = std::getenv("OPENAI_API_KEY");
  if (key != nullptr && *key != '\0') h.add("Authorization", std::string("Bearer ") + key);
  return h;
}

Result<net::HttpResponse> query_server(const ServerTarget& to, std::string_view method,
                                       std::string_view path, std::chrono::milliseconds timeout) {
  net::EventLoop loop;
  net::ClientOptions opts;
  opts.connect_timeout = timeout;
  opts.response_header_timeout = timeout;
  opts.idle_read_timeout = timeout;
  opts.max_buffered_body = 64u << 20;
  net::HttpClient client(loop, opts);
  net::ClientRequest req;
  req.method = std::string(method);
  req.target = to.prefix + std::string(path);
  req.headers = to.headers;
  Result<net::HttpResponse> out = Status::internal("no answer");
  client.fetch(to.endpoint, std::move(req), [&](Result<net::HttpResponse> r) {
    out = std::move(r);
    loop.stop();
  });
  loop.run();
  Status closed = loop.close();
  if (!closed) return closed;
  if (!out) {
    return std::move(out).status().with_context(std::string(method) + " " + to.prefix + std::string(path));
  }
  return out;
}

Result<std::string> parse_first_model_id(std::string_view models_body) {
  json doc = parse_object(models_body);
  auto data = doc.is_object() ? doc.find("data") : doc.end();
  if (!doc.is_object() || data == doc.end() || !data->is_array()) {
    return Status::corrupt("/v1/models did not answer {\"data\": [...]}");
  }
  if (data->empty() || !(*data)[0].is_object() || !(*data)[0].contains("id") ||
      !(*data)[0]["id"].is_string()) {
    return Status::not_found("/v1/models lists no model");
  }
  return (*data)[0]["id"].get<std::string>();
}

void add_tokenizer_hints(std::string_view info_body, ServerTokenizerHints& hints) {
  json doc = parse_object(info_body);
  if (!doc.is_object()) return;
  const json& info = through_decode(doc);
  add_path(info, "tokenizer_path", hints);
  add_path(info, "model_path", hints);
  auto lf = info.find("load_format");
  if (lf != info.end() && lf->is_string() && lf->get<std::string>() == "dummy") hints.dummy = true;
}

void add_model_list_hints(std::string_view models_body, ServerTokenizerHints& hints) {
  json doc = parse_object(models_body);
  if (!doc.is_object()) return;
  auto data = doc.find("data");
  if (data == doc.end() || !data->is_array()) return;
  for (const auto& model : *data) {
    if (!model.is_object()) continue;
    add_path(model, "root", hints);  // vLLM and sglang: where the model was loaded from
    add_path(model, "id", hints);
  }
}

ServerInfo parse_server_info(std::string_view body) {
  ServerInfo out;
  json doc = parse_object(body);
  if (!doc.is_object()) return out;
  const json& info = through_decode(doc);
  out.json = info.dump(-1, ' ', /*ensure_ascii=*/true, json::error_handler_t::replace);
  auto states = info.find("internal_states");
  if (states != info.end() && states->is_array() && !states->empty() && (*states)[0].is_object()) {
    auto acc = (*states)[0].find("avg_spec_accept_length");
    if (acc != (*states)[0].end() && acc->is_number()) out.accept_length = acc->get<double>();
  }
  return out;
}

}  // namespace pdctl::roles

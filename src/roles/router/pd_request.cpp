#include "roles/router/pd_request.h"

#include <limits>
#include <random>

namespace pdctl::router {
namespace {

using nlohmann::json;

bool is_list_of(const json& v, bool (json::*pred)() const noexcept) {
  if (!v.is_array() || v.empty()) return false;
  for (const auto& e : v) {
    if (!(e.*pred)()) return false;
  }
  return true;
}

void append_word(std::string& out, std::string_view word) {
  if (!out.empty()) out += ' ';
  out += word;
}

// Token ids as decimal text separated by spaces; nested lists are flattened.
void append_ids(std::string& out, const json& ids) {
  if (ids.is_number_integer()) {
    append_word(out, std::to_string(ids.get<int64_t>()));
  } else if (ids.is_array()) {
    for (const auto& e : ids) append_ids(out, e);
  }
}

// A chat message content: a string, or a list of parts whose "text" parts count.
std::optional<std::string> content_text(const json& content) {
  if (content.is_string()) return content.get<std::string>();
  if (content.is_array()) {
    std::string out;
    for (const auto& part : content) {
      if (part.is_object() && part.value("type", "") == "text") {
        auto t = part.find("text");
        if (t != part.end() && t->is_string()) append_word(out, t->get<std::string>());
      }
    }
    return out;
  }
  return std::nullopt;
}

std::string trim(std::string s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return {};
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

json* input_logprobs_of(json& response) {
  if (!response.is_object()) return nullptr;
  auto meta = response.find("meta_info");
  if (meta == response.end() || !meta->is_object()) return nullptr;
  auto lp = meta->find("input_token_logprobs");
  if (lp == meta->end() || !lp->is_array()) return nullptr;
  return &*lp;
}

bool merge_one(const json& prefill, json& decode) {
  auto p = prefill_input_logprobs(prefill);
  json* d = input_logprobs_of(decode);
  if (!p || !p->is_array() || !d) return false;
  json merged = std::move(*p);
  for (auto& e : *d) merged.push_back(std::move(e));
  *d = std::move(merged);
  return true;
}

}  // namespace

const char* route_path(ApiRoute r) {
  switch (r) {
    case ApiRoute::kGenerate: return "/generate";
    case ApiRoute::kCompletions: return "/v1/completions";
    case ApiRoute::kChatCompletions: return "/v1/chat/completions";
  }
  return "";
}

std::optional<ApiRoute> route_from_path(std::string_view path) {
  if (path == "/generate") return ApiRoute::kGenerate;
  if (path == "/v1/completions") return ApiRoute::kCompletions;
  if (path == "/v1/chat/completions") return ApiRoute::kChatCompletions;
  return std::nullopt;
}

std::optional<size_t> batch_size(ApiRoute route, const json& body) {
  if (!body.is_object()) return std::nullopt;
  switch (route) {
    case ApiRoute::kGenerate: {
      auto ids = body.find("input_ids");
      if (ids != body.end() && is_list_of(*ids, &json::is_array)) return ids->size();
      auto text = body.find("text");
      if (text != body.end() && is_list_of(*text, &json::is_string)) return text->size();
      return std::nullopt;
    }
    case ApiRoute::kChatCompletions: {
      auto n = body.find("n");
      if (n != body.end() && n->is_number_integer() && n->get<int64_t>() > 1) {
        return static_cast<size_t>(n->get<int64_t>());
      }
      return std::nullopt;
    }
    case ApiRoute::kCompletions: {
      auto p = body.find("prompt");
      if (p != body.end() && (is_list_of(*p, &json::is_string) || is_list_of(*p, &json::is_array))) {
        return p->size();
      }
      return std::nullopt;
    }
  }
  return std::nullopt;
}

uint64_t generate_bootstrap_room(Rng& rng) {
  return rng() & static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
}

Status inject_bootstrap(json& body, const BootstrapTarget& target, std::optional<size_t> batch,
                        Rng& rng) {
  if (!body.is_object()) return Status::invalid_argument("the request body must be a JSON object");
  json port = target.port ? json(*target.port) : json(nullptr);
  if (batch) {
    json hosts = json::array(), ports = json::array(), rooms = json::array();
    for (size_t i = 0; i < *batch; ++i) {
      hosts.push_back(target.host);
      ports.push_back(port);
      rooms.push_back(generate_bootstrap_room(rng));
    }
    body["bootstrap_host"] = std::move(hosts);
    body["bootstrap_port"] = std::move(ports);
    body["bootstrap_room"] = std::move(rooms);
  } else {
    body["bootstrap_host"] = target.host;
    body["bootstrap_port"] = std::move(port);
    body["bootstrap_room"] = generate_bootstrap_room(rng);
  }
  return Status::ok();
}

Result<json> make_pd_body(ApiRoute route, const json& request, const Worker& prefill, Rng& rng) {
  json body = request;
  PDCTL_RETURN_IF_ERROR(inject_bootstrap(body, {prefill.bootstrap_host(), prefill.bootstrap_port()},
                                         batch_size(route, request), rng));
  return body;
}

bool is_streaming(const json& body) {
  if (!body.is_object()) return false;
  auto s = body.find("stream");
  return s != body.end() && s->is_boolean() && s->get<bool>();
}

bool wants_logprobs(ApiRoute route, const json& body) {
  if (!body.is_object()) return false;
  switch (route) {
    case ApiRoute::kGenerate: {
      auto v = body.find("return_logprob");
      if (v == body.end()) return false;
      if (v->is_boolean()) return v->get<bool>();
      if (v->is_array()) {
        for (const auto& e : *v) {
          if (e.is_boolean() && e.get<bool>()) return true;
        }
      }
      return false;
    }
    case ApiRoute::kChatCompletions: {
      auto v = body.find("logprobs");
      return v != body.end() && v->is_boolean() && v->get<bool>();
    }
    case ApiRoute::kCompletions: {
      auto v = body.find("logprobs");
      return v != body.end() && !v->is_null();
    }
  }
  return false;
}

std::string routing_text(ApiRoute route, const json& body) {
  std::string out;
  if (!body.is_object()) return out;
  switch (route) {
    case ApiRoute::kGenerate: {
      auto text = body.find("text");
      if (text != body.end() && text->is_string()) return text->get<std::string>();
      if (text != body.end() && text->is_array()) {
        for (const auto& t : *text) {
          if (t.is_string()) append_word(out, t.get<std::string>());
        }
        return out;
      }
      auto ids = body.find("input_ids");
      if (ids != body.end()) append_ids(out, *ids);
      return out;
    }
    case ApiRoute::kCompletions: {
      auto p = body.find("prompt");
      if (p == body.end()) return out;
      if (p->is_string()) return p->get<std::string>();
      if (is_list_of(*p, &json::is_string)) {
        for (const auto& t : *p) append_word(out, t.get<std::string>());
        return out;
      }
      append_ids(out, *p);
      return out;
    }
    case ApiRoute::kChatCompletions: {
      auto msgs = body.find("messages");
      if (msgs == body.end() || !msgs->is_array()) return out;
      std::vector<std::string> parts;
      for (const auto& m : *msgs) {
        if (!m.is_object()) continue;
        std::string role = m.value("role", "");
        auto c = m.find("content");
        std::optional<std::string> text = c != m.end() ? content_text(*c) : std::nullopt;
        if (role == "assistant") {
          // Content and reasoning together, skipped when both are empty (SGLang).
          std::string reasoning;
          auto r = m.find("reasoning_content");
          if (r != m.end() && r->is_string()) reasoning = r->get<std::string>();
          std::string main = text.value_or("");
          if (main.empty() && reasoning.empty()) continue;
          parts.push_back(trim(main + " " + reasoning));
        } else if (text) {
          parts.push_back(std::move(*text));
        }
      }
      for (size_t i = 0; i < parts.size(); ++i) {
        if (i > 0) out += ' ';
        out += parts[i];
      }
      return out;
    }
  }
  return out;
}

std::optional<json> prefill_input_logprobs(const json& prefill_response) {
  if (!prefill_response.is_object()) return std::nullopt;
  auto meta = prefill_response.find("meta_info");
  if (meta == prefill_response.end() || !meta->is_object()) return std::nullopt;
  auto lp = meta->find("input_token_logprobs");
  if (lp == meta->end() || !lp->is_array()) return std::nullopt;
  return *lp;
}

bool merge_logprobs(const json& prefill_response, json& decode_response) {
  if (prefill_response.is_array() && decode_response.is_array()) {
    if (prefill_response.size() != decode_response.size()) return false;
    bool any = false;
    for (size_t i = 0; i < decode_response.size(); ++i) {
      any = merge_one(prefill_response[i], decode_response[i]) || any;
    }
    return any;
  }
  return merge_one(prefill_response, decode_response);
}

std::optional<std::string> merge_stream_logprobs(const json& prefill_logprobs,
                                                 std::string_view event_data) {
  if (!prefill_logprobs.is_array()) return std::nullopt;
  if (event_data.find("[DONE]") != std::string_view::npos) return std::nullopt;
  json chunk = json::parse(event_data, nullptr, /*allow_exceptions=*/false);
  if (chunk.is_discarded()) return std::nullopt;
  json* d = input_logprobs_of(chunk);
  if (!d) return std::nullopt;
  json merged = prefill_logprobs;
  for (auto& e : *d) merged.push_back(std::move(e));
  *d = std::move(merged);
  return chunk.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace pdctl::router

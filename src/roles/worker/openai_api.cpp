#include "roles/worker/openai_api.h"

#include <ctime>

#include "net/auth.h"
#include "net/sse.h"
#include "roles/worker/api_fields.h"
#include "roles/worker/api_formatting.h"
#include "roles/worker/worker_server.h"

namespace pdctl::worker {

using nlohmann::json;

namespace {

// What an OpenAI reply needs of its request (the items stay with the ApiCall).
struct OpenAiMeta {
  bool chat = false;
  std::string id;
  std::string model;
  int64_t created = 0;
  bool include_usage = false;
  bool continuous_usage = false;
  bool logprobs = false;
  int top_logprobs = 0;
  bool echo = false;
  std::vector<std::string> echo_text;
  bool return_token_ids = false;
};

json item_usage(const ApiCall& call, size_t i) {
  const ItemOutput& o = call.out(i);
  const int prompt = o.prompt_tokens > 0 ? o.prompt_tokens : static_cast<int>(call.spec(i).req.input_ids.size());
  return json{{"prompt_tokens", prompt},
              {"completion_tokens", o.completion_tokens},
              {"total_tokens", prompt + o.completion_tokens}};
}

class OpenAiFormat final : public ReplyFormat {
 public:
  OpenAiFormat(OpenAiMeta meta, const engine::Tokenizer* tok) : m_(std::move(meta)), tok_(tok) {}

  void stream_events(ApiCall& call, std::string& out) override {
    for (size_t i = 0; i < call.size(); ++i) {
      if (m_.chat) {
        chat_events(call, i, out);
      } else {
        completion_event(call, i, out);
      }
    }
  }

  void stream_close(ApiCall& call, std::string& out) override {
    if (!m_.include_usage) return;
    json chunk = head(m_.chat ? "chat.completion.chunk" : "text_completion");
    chunk["choices"] = json::array();
    chunk["usage"] = usage_json(call);
    net::append_sse_event(out, dump_json(chunk));
  }

  std::string whole(const ApiCall& call) override {
    json choices = json::array();
    for (size_t i = 0; i < call.size(); ++i) {
      const ItemOutput& o = call.out(i);
      json c;
      c["index"] = i;
      if (m_.chat) {
        c["message"] = {{"role", "assistant"}, {"content", o.text}, {"reasoning_content", nullptr}, {"tool_calls", nullptr}};
        c["logprobs"] = m_.logprobs ? chat_logprobs(tok_, o.logprobs, 0, o.logprobs.size(), m_.top_logprobs) : json(nullptr);
      } else {
        c["text"] = (m_.echo ? m_.echo_text[static_cast<size_t>(call.spec(i).prompt_index)] : std::string()) + o.text;
        c["logprobs"] =
            m_.logprobs ? completion_logprobs(tok_, o.logprobs, 0, o.logprobs.size(), m_.top_logprobs) : json(nullptr);
      }
      c["finish_reason"] = openai_finish_reason(o);
      c["matched_stop"] = matched_stop_json(o);
      if (m_.return_token_ids) c["token_ids"] = o.ids;
      choices.push_back(std::move(c));
    }
    json reply = head(m_.chat ? "chat.completion" : "text_completion");
    reply["choices"] = std::move(choices);
    reply["usage"] = usage_json(call);
    return dump_json(reply);
  }

 private:
  json head(const char* object) const {
    return json{{"id", m_.id}, {"object", object}, {"created", m_.created}, {"model", m_.model}};
  }

  void emit(ApiCall& call, size_t i, json choice, std::string& out) const {
    json chunk = head(m_.chat ? "chat.completion.chunk" : "text_completion");
    chunk["choices"] = json::array({std::move(choice)});
    // OpenAI: with include_usage every other chunk has "usage": null.
    if (m_.continuous_usage) {
      chunk["usage"] = item_usage(call, i);
    } else if (m_.include_usage) {
      chunk["usage"] = nullptr;
    }
    net::append_sse_event(out, dump_json(chunk));
  }

  void completion_event(ApiCall& call, size_t i, std::string& out) {
    ItemOutput& o = call.out(i);
    std::string delta = o.text.substr(o.sent_text);
    if (m_.echo && !o.sent_first) delta = m_.echo_text[static_cast<size_t>(call.spec(i).prompt_index)] + delta;
    const size_t lp_to = o.logprobs.size();
    const bool new_lp = m_.logprobs && lp_to > o.sent_logprobs;
    const bool finishing = o.finished && !o.sent_finish;
    // Tokens whose text is held back (a possible stop string, a partial character) wait
    // for the text, as SGLang sends nothing for them either.
    if (delta.empty() && !new_lp && !finishing) return;
    json c;
    c["index"] = i;
    c["text"] = std::move(delta);
    c["logprobs"] = new_lp ? completion_logprobs(tok_, o.logprobs, o.sent_logprobs, lp_to, m_.top_logprobs) : json(nullptr);
    c["finish_reason"] = finishing ? openai_finish_reason(o) : json(nullptr);
    c["matched_stop"] = finishing ? matched_stop_json(o) : json(nullptr);
    if (m_.return_token_ids) c["token_ids"] = std::vector<int32_t>(o.ids.begin() + static_cast<long>(o.sent_ids), o.ids.end());
    emit(call, i, std::move(c), out);
    o.sent_text = o.text.size();
    o.sent_logprobs = lp_to;
    o.sent_ids = o.ids.size();
    o.sent_first = true;
    o.sent_finish = o.finished;
  }

  void chat_events(ApiCall& call, size_t i, std::string& out) {
    ItemOutput& o = call.out(i);
    if (!o.sent_first) {
      if (o.ids.empty() && !o.finished) return;
      json c = {{"index", i},
                {"delta", {{"role", "assistant"}, {"content", ""}}},
                {"logprobs", nullptr},
                {"finish_reason", nullptr}};
      emit(call, i, std::move(c), out);
      o.sent_first = true;
    }
    const size_t lp_to = o.logprobs.size();
    const bool new_lp = m_.logprobs && lp_to > o.sent_logprobs;
    if (o.text.size() > o.sent_text || new_lp) {
      json c = {{"index", i},
                {"delta", {{"content", o.text.substr(o.sent_text)}}},
                {"logprobs", new_lp ? chat_logprobs(tok_, o.logprobs, o.sent_logprobs, lp_to, m_.top_logprobs)
                                    : json(nullptr)},
                {"finish_reason", nullptr}};
      if (m_.return_token_ids) {
        c["token_ids"] = std::vector<int32_t>(o.ids.begin() + static_cast<long>(o.sent_ids), o.ids.end());
        o.sent_ids = o.ids.size();
      }
      emit(call, i, std::move(c), out);
      o.sent_text = o.text.size();
      o.sent_logprobs = lp_to;
    }
    if (o.finished && !o.sent_finish) {
      json c = {{"index", i},
                {"delta", json::object()},
                {"logprobs", nullptr},
                {"finish_reason", openai_finish_reason(o)},
                {"matched_stop", matched_stop_json(o)}};
      emit(call, i, std::move(c), out);
      o.sent_finish = true;
    }
  }

  OpenAiMeta m_;
  const engine::Tokenizer* tok_;
};

void handle_openai(WorkerApi& api, const net::Request& req, net::Response resp, bool chat) {
  const ApiModel* model = api.model_for_request(resp);
  if (!model) return;
  auto body = parse_json_object(req.body);
  if (!body) return send_api_error(resp, body.status());
  auto parsed = chat ? parse_chat(*body, *model) : parse_completion(*body, *model);
  if (!parsed) return send_api_error(resp, parsed.status());
  OpenAiCall& call = *parsed;
  auto format = make_openai_format(call, model->tokenizer, model->name, static_cast<int64_t>(std::time(nullptr)));
  auto running = std::make_shared<ApiCall>(api.dispatcher().next_call_id(), resp, std::move(call.items),
                                           std::move(format), call.stream);
  if (Status st = api.dispatcher().start(running); !st.is_ok()) send_api_error(resp, st);
}

json model_card(const ApiModel& m, int64_t created) {
  return json{{"id", m.name},     {"object", "model"}, {"created", created},           {"owned_by", "pdctl"},
              {"root", m.name},   {"parent", nullptr}, {"max_model_len", m.context_length}};
}

void handle_tokenize(WorkerApi& api, const net::Request& req, net::Response resp) {
  const ApiModel* model = api.model_for_info(resp);
  if (!model) return;
  auto body = parse_json_object(req.body);
  if (!body) return send_api_error(resp, body.status());
  auto t = parse_tokenize(*body, *model);
  if (!t) return send_api_error(resp, t.status());
  json reply;
  if (t->batch) {
    json counts = json::array();
    for (const auto& ids : t->tokens) counts.push_back(ids.size());
    reply["tokens"] = t->tokens;
    reply["count"] = std::move(counts);
  } else {
    reply["tokens"] = t->tokens[0];
    reply["count"] = t->tokens[0].size();
  }
  reply["max_model_len"] = model->context_length;
  resp.send(200, reply.dump());
}

void handle_detokenize(WorkerApi& api, const net::Request& req, net::Response resp) {
  const ApiModel* model = api.model_for_info(resp);
  if (!model) return;
  auto body = parse_json_object(req.body);
  if (!body) return send_api_error(resp, body.status());
  auto reply = run_detokenize(*body, *model);
  if (!reply) return send_api_error(resp, reply.status());
  resp.send(200, dump_json(*reply));
}

}  // namespace

std::unique_ptr<ReplyFormat> make_openai_format(const OpenAiCall& call, const engine::Tokenizer* tok,
                                                const std::string& model_name, int64_t created) {
  OpenAiMeta m;
  m.chat = call.chat;
  m.id = call.id;
  // OpenAI answers with the model that served; SGLang echoes the request's. They agree:
  // a request may only name the served model.
  m.model = model_name;
  m.created = created;
  m.include_usage = call.include_usage;
  m.continuous_usage = call.continuous_usage;
  m.logprobs = call.logprobs;
  m.top_logprobs = call.top_logprobs;
  m.echo = call.echo;
  m.echo_text = call.echo_text;
  m.return_token_ids = call.return_token_ids || !tok;  // without a tokenizer the ids are the output
  return std::make_unique<OpenAiFormat>(std::move(m), tok);
}

void add_openai_routes(WorkerApi& api, net::HttpServer& server, const std::string& api_key) {
  auto guard = [&api_key](net::Handler h) { return net::require_bearer(api_key, std::move(h)); };
  server.route("POST", "/v1/completions", guard([&api](const net::Request& q, net::Response r) {
                 handle_openai(api, q, std::move(r), /*chat=*/false);
               }));
  server.route("POST", "/v1/chat/completions", guard([&api](const net::Request& q, net::Response r) {
                 handle_openai(api, q, std::move(r), /*chat=*/true);
               }));
  for (const char* path : {"/v1/tokenize", "/tokenize"}) {
    server.route("POST", path, guard([&api](const net::Request& q, net::Response r) {
                   handle_tokenize(api, q, std::move(r));
                 }));
  }
  for (const char* path : {"/v1/detokenize", "/detokenize"}) {
    server.route("POST", path, guard([&api](const net::Request& q, net::Response r) {
                   handle_detokenize(api, q, std::move(r));
                 }));
  }
  server.route("GET", "/v1/models", guard([&api](const net::Request&, net::Response r) {
                 const ApiModel* m = api.model_for_info(r);
                 if (!m) return;
                 json list = {{"object", "list"}, {"data", json::array({model_card(*m, api.start_time())})}};
                 r.send(200, list.dump());
               }));
  server.route("GET", "/v1/models/{model...}", guard([&api](const net::Request& q, net::Response r) {
                 const ApiModel* m = api.model_for_info(r);
                 if (!m) return;
                 const std::string name(q.param("model"));
                 if (name != m->name) {
                   return send_api_error(r, Status::not_found("The model '" + name + "' does not exist"));
                 }
                 r.send(200, model_card(*m, api.start_time()).dump());
               }));
}

}  // namespace pdctl::worker

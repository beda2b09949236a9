#include "roles/worker/generate_api.h"

#include "net/auth.h"
#include "net/sse.h"
#include "roles/worker/api_fields.h"
#include "roles/worker/api_formatting.h"
#include "roles/worker/worker_server.h"

namespace pdctl::worker {

using nlohmann::json;

namespace {

class GenerateFormat final : public ReplyFormat {
 public:
  GenerateFormat(bool batch, bool text_in_logprobs, const engine::Tokenizer* tok)
      : batch_(batch), text_in_logprobs_(text_in_logprobs), tok_(tok) {}

  void stream_events(ApiCall& call, std::string& out) override {
    for (size_t i = 0; i < call.size(); ++i) {
      ItemOutput& o = call.out(i);
      const bool news = o.ids.size() > o.sent_ids || o.text.size() > o.sent_text;
      const bool finishing = o.finished && !o.sent_finish;
      if (!news && !finishing) continue;
      json obj = generate_object(call.spec(i), o, tok_, text_in_logprobs_);
      if (batch_) obj["index"] = i;
      net::append_sse_event(out, dump_json(obj));
      o.sent_ids = o.ids.size();
      o.sent_text = o.text.size();
      o.sent_logprobs = o.logprobs.size();
      o.sent_first = true;
      o.sent_finish = o.finished;
    }
  }

  void stream_close(ApiCall&, std::string&) override {}

  std::string whole(const ApiCall& call) override {
    if (!batch_) return dump_json(generate_object(call.spec(0), call.out(0), tok_, text_in_logprobs_));
    json list = json::array();
    for (size_t i = 0; i < call.size(); ++i) {
      list.push_back(generate_object(call.spec(i), call.out(i), tok_, text_in_logprobs_));
    }
    return dump_json(list);
  }

 private:
  bool batch_;
  bool text_in_logprobs_;
  const engine::Tokenizer* tok_;
};

void handle_generate(WorkerApi& api, const net::Request& req, net::Response resp) {
  const ApiModel* model = api.model_for_request(resp);
  if (!model) return;
  auto body = parse_json_object(req.body);
  if (!body) return send_api_error(resp, body.status());
  auto parsed = parse_generate(*body, *model);
  if (!parsed) return send_api_error(resp, parsed.status());
  GenerateCall& call = *parsed;
  auto format = make_generate_format(call, model->tokenizer);
  auto running = std::make_shared<ApiCall>(api.dispatcher().next_call_id(), resp, std::move(call.items),
                                           std::move(format), call.stream);
  if (Status st = api.dispatcher().start(running); !st.is_ok()) send_api_error(resp, st);
}

}  // namespace

std::unique_ptr<ReplyFormat> make_generate_format(const GenerateCall& call, const engine::Tokenizer* tok) {
  return std::make_unique<GenerateFormat>(call.batch, call.return_text_in_logprobs, tok);
}

void add_generate_routes(WorkerApi& api, net::HttpServer& server, const std::string& api_key) {
  for (const char* method : {"POST", "PUT"}) {
    server.route(method, "/generate", net::require_bearer(api_key, [&api](const net::Request& q, net::Response r) {
                   handle_generate(api, q, std::move(r));
                 }));
  }
}

}  // namespace pdctl::worker

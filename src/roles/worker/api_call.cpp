#include "roles/worker/api_call.h"

#include <nlohmann/json.hpp>

#include "net/sse.h"

namespace pdctl::worker {

ApiCall::ApiCall(uint64_t id, net::Response response, std::vector<ItemSpec> items, std::unique_ptr<ReplyFormat> format,
                 bool stream)
    : id_(id),
      response_(std::move(response)),
      items_(std::move(items)),
      outputs_(items_.size()),
      format_(std::move(format)),
      stream_(stream) {}

void ApiCall::add_chunk(size_t i, engine::OutputChunk&& chunk, double now) {
  ItemOutput& o = outputs_[i];
  if (o.finished) return;  // already ended here (fail_item); the engine's last word changes nothing
  if (!chunk.token_ids.empty()) {
    if (o.first_token_at == 0) o.first_token_at = now;
    o.last_token_at = now;
  }
  o.ids.insert(o.ids.end(), chunk.token_ids.begin(), chunk.token_ids.end());
  o.text += chunk.text;
  for (auto& lp : chunk.logprobs) o.logprobs.push_back(std::move(lp));
  if (!chunk.input_logprobs.empty() && o.input_logprobs.empty()) o.input_logprobs = std::move(chunk.input_logprobs);
  if (chunk.prompt_tokens > 0) o.prompt_tokens = chunk.prompt_tokens;
  o.cached_tokens = std::max(o.cached_tokens, chunk.cached_tokens);
  o.completion_tokens = std::max(chunk.completion_tokens, static_cast<int>(o.ids.size()));
  if (chunk.finished) {
    o.finished = true;
    o.finish = std::move(chunk.finish);
    o.e2e_latency = now - items_[i].req.arrival_time;
  }
}

void ApiCall::fail_item(size_t i, Status why) {
  ItemOutput& o = outputs_[i];
  if (o.finished) return;
  o.finished = true;
  o.finish.type = engine::FinishInfo::Type::kAbort;
  o.finish.abort_code = why.code();
  o.finish.message = why.message();
  if (o.prompt_tokens == 0) o.prompt_tokens = static_cast<int>(items_[i].req.input_ids.size());
}

bool ApiCall::all_finished() const {
  for (const ItemOutput& o : outputs_) {
    if (!o.finished) return false;
  }
  return true;
}

Status ApiCall::first_error() const {
  for (const ItemOutput& o : outputs_) {
    if (o.finished && o.finish.type == engine::FinishInfo::Type::kAbort && o.finish.abort_code != Errc::kCancelled &&
        o.finish.abort_code != Errc::kOk) {
      return Status(o.finish.abort_code, o.finish.message.empty() ? "the request was aborted" : o.finish.message);
    }
  }
  return Status::ok();
}

void ApiCall::flush() {
  if (reply_done_) return;
  if (!stream_) {
    if (!all_finished()) return;
    reply_done_ = true;
    if (on_complete_) return on_complete_(*this);
    if (Status err = first_error(); !err.is_ok()) return send_api_error(response_, err);
    response_.send(200, format_->whole(*this));
    return;
  }
  if (!started_) {
    bool produced = false;
    for (const ItemOutput& o : outputs_) produced = produced || !o.ids.empty();
    if (!produced && !all_finished()) return;  // nothing to say yet: headers go with the first output
    // An engine error before any output is still an HTTP error, as SGLang's kick-started stream.
    if (!produced) {
      if (Status err = first_error(); !err.is_ok()) {
        reply_done_ = true;
        return send_api_error(response_, err);
      }
    }
    started_ = true;
    response_.begin_sse();
    response_.on_writable([weak = weak_from_this()] {
      if (auto self = weak.lock()) {
        self->paused_ = false;
        self->write_stream();
      }
    });
  }
  write_stream();
}

void ApiCall::write_stream() {
  if (paused_ || reply_done_) return;
  std::string out;
  format_->stream_events(*this, out);
  const bool closing = all_finished();
  if (closing) {
    if (Status err = first_error(); !err.is_ok()) {
      net::append_sse_event(out, error_body(api_error(err)));
    } else {
      format_->stream_close(*this, out);
    }
    out += net::kSseDone;
  }
  if (!out.empty()) {
    switch (response_.write(out)) {
      case net::WriteResult::kOk: break;
      case net::WriteResult::kPaused: paused_ = true; break;
      case net::WriteResult::kClosed: mark_client_gone(); return;
    }
  }
  if (closing) {
    reply_done_ = true;
    response_.end();
  }
}

std::string error_body(const ApiError& e) {
  nlohmann::json err;
  err["message"] = e.message;
  err["type"] = std::string(net::default_error_type(e.status));
  err["param"] = e.param.empty() ? nlohmann::json(nullptr) : nlohmann::json(e.param);
  err["code"] = e.code.empty() ? nlohmann::json(e.status) : nlohmann::json(e.code);
  nlohmann::json j;
  j["error"] = std::move(err);
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

ApiError api_error(const Status& st) {
  ApiError e;
  e.status = http_status_for(st.code());
  e.message = st.message();
  if (st.code() == Errc::kNotFound) {  // the API's only "not found" is an unknown model name
    e.param = "model";
    e.code = "model_not_found";
  }
  return e;
}

void send_api_error(net::Response& r, const ApiError& e) { r.send(e.status, error_body(e)); }

}  // namespace pdctl::worker

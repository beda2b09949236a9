#include "roles/bench/bench_stream.h"

#include <string>

#include "roles/bench/bench_json_scan.h"

namespace pdctl::roles {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

void fail(RequestRecord& rec, std::string error) {
  rec.success = false;
  rec.finished = true;
  rec.error = std::move(error);
}

// An error object instead of output: {"error": {...}} (OpenAI, sglang) or
// {"object": "error", "message": ...} (vLLM-style). sglang.bench_serving would take such a
// chunk for an empty one and count the request a success; here it fails the request.
bool take_error(const JsonView& doc, RequestRecord& rec) {
  std::string message;
  if (auto e = doc.get("error"); e && e->kind() != JsonKind::kNull) {
    if (e->is_string()) {
      e->get_string(message);
    } else if (auto m = e->get("message"); m && m->is_string()) {
      m->get_string(message);
    } else {
      message = std::string(e->raw());
    }
  } else if (auto o = doc.get("object"); o && o->raw() == "\"error\"") {
    if (auto m = doc.get("message"); m && m->is_string()) m->get_string(message);
  } else {
    return false;
  }
  fail(rec, "server error: " + (message.empty() ? std::string(doc.raw()) : message));
  return true;
}

std::optional<int> completion_tokens(const JsonView& holder) {
  if (!holder.is_object()) return std::nullopt;
  auto v = holder.get("completion_tokens");
  if (!v) return std::nullopt;
  auto n = v->as_int();
  if (!n) return std::nullopt;
  return static_cast<int>(*n);
}

// usage.completion_tokens where present and not null ((data.get("usage") or {}) in sglang).
void take_usage(const JsonView& doc, RequestRecord& rec) {
  if (auto usage = doc.get("usage")) {
    if (auto n = completion_tokens(*usage)) rec.reported_output_len = *n;
  }
}

void set_text(RequestRecord& rec, const JsonView& text, bool cumulative) {
  if (!rec.keep_text) {
    size_t n = text.string_size();
    rec.generated_bytes = cumulative ? n : rec.generated_bytes + n;
    return;
  }
  if (cumulative) {
    text.get_string(rec.generated_text);  // reuses the buffer's capacity
  } else {
    text.append_string(rec.generated_text);
  }
  rec.generated_bytes = rec.generated_text.size();
}

// A chunk that carried a token: the first sets TTFT, later ones add one ITL each.
void on_token_chunk(RequestRecord& rec, double now_s, ChunkInfo& info) {
  info.token = true;
  info.new_tokens = 1;
  if (!rec.got_token) {
    rec.got_token = true;
    rec.ttft_s = now_s - rec.start_s;
  } else {
    rec.itl_s.push_back(now_s - rec.last_token_s);
  }
  rec.last_token_s = now_s;
}

// /generate streams the whole text so far and meta_info.completion_tokens. A chunk that
// brings n new tokens after the first adds n ITLs of gap / n, as sglang does.
void sglang_chunk(const JsonView& doc, double now_s, RequestRecord& rec, ChunkInfo& info) {
  auto text = doc.get("text");
  if (!text || !text->is_nonempty_string()) return;
  auto meta = doc.get("meta_info");
  std::optional<int> n = meta ? completion_tokens(*meta) : std::nullopt;
  if (!n) {
    fail(rec, "a /generate chunk with text has no meta_info.completion_tokens");
    info.failed = true;
    return;
  }
  set_text(rec, *text, /*cumulative=*/true);
  rec.reported_output_len = *n;
  if (!rec.got_token) {
    rec.got_token = true;
    rec.ttft_s = now_s - rec.start_s;
    info.token = true;
    info.new_tokens = *n;
  } else {
    int fresh = *n - rec.last_output_len;
    if (fresh == 0) return;  // same token count: no ITL, and the gap keeps growing
    if (fresh > 0) {  // a count going down adds nothing, as sglang's [gap / n] * n
      info.token = true;
      info.new_tokens = fresh;
      double each = (now_s - rec.last_token_s) / fresh;
      rec.itl_s.insert(rec.itl_s.end(), static_cast<size_t>(fresh), each);
    }
  }
  rec.last_token_s = now_s;
  rec.last_output_len = *n;
}

// /v1/completions: choices[0].text. A usage-only chunk (stream_options.include_usage sends
// one with "choices": []) carries no token; sglang would index choices[0] and fail.
void completions_chunk(const JsonView& doc, double now_s, RequestRecord& rec, ChunkInfo& info) {
  take_usage(doc, rec);
  auto choices = doc.get("choices");
  auto first = choices ? choices->at(0) : std::nullopt;
  auto text = first ? first->get("text") : std::nullopt;
  if (!text || !text->is_nonempty_string()) return;
  on_token_chunk(rec, now_s, info);
  set_text(rec, *text, /*cumulative=*/false);
}

// /v1/chat/completions: choices[0].delta.content.
void chat_chunk(const JsonView& doc, double now_s, RequestRecord& rec, ChunkInfo& info) {
  take_usage(doc, rec);
  auto choices = doc.get("choices");
  auto first = choices ? choices->at(0) : std::nullopt;
  auto delta = first ? first->get("delta") : std::nullopt;
  auto content = delta ? delta->get("content") : std::nullopt;
  if (!content || !content->is_nonempty_string()) return;
  on_token_chunk(rec, now_s, info);
  set_text(rec, *content, /*cumulative=*/false);
}

}  // namespace

ChunkInfo on_stream_payload(Backend backend, std::string_view payload, double now_s,
                            RequestRecord& rec) {
  ChunkInfo info;
  if (rec.finished) return info;
  payload = trim(payload);
  if (payload.substr(0, 5) == "data:") payload = trim(payload.substr(5));
  if (payload.empty()) return info;
  rec.got_line = true;
  rec.latency_s = now_s - rec.start_s;  // every line moves the end, [DONE] included
  if (payload == "[DONE]") {
    info.done = true;
    return info;
  }
  auto doc = JsonView::parse(payload);
  if (!doc) {
    fail(rec, "malformed chunk: " + doc.status().message());
    info.failed = true;
    return info;
  }
  if (!doc->is_object()) {
    fail(rec, "malformed chunk: not a JSON object");
    info.failed = true;
    return info;
  }
  if (take_error(*doc, rec)) {
    info.failed = true;
    return info;
  }
  switch (backend) {
    case Backend::kSglang: sglang_chunk(*doc, now_s, rec, info); break;
    case Backend::kOpenAI: completions_chunk(*doc, now_s, rec, info); break;
    case Backend::kOpenAIChat: chat_chunk(*doc, now_s, rec, info); break;
  }
  return info;
}

void finish_stream(RequestRecord& rec) {
  if (rec.finished) return;
  if (!rec.got_line) {
    fail(rec, "empty response");
    return;
  }
  rec.finished = true;
  rec.success = true;
  rec.output_len = rec.reported_output_len.value_or(rec.requested_output_len);
}

void on_full_response(Backend backend, std::string_view body, double now_s, RequestRecord& rec) {
  if (rec.finished) return;
  rec.got_line = !trim(body).empty();
  rec.latency_s = now_s - rec.start_s;
  auto doc = JsonView::parse(body);
  if (!doc || !doc->is_object()) {
    fail(rec, "malformed response: " +
                  (doc ? std::string("not a JSON object") : doc.status().message()));
    return;
  }
  if (take_error(*doc, rec)) return;
  std::optional<JsonView> text;
  if (backend == Backend::kSglang) {
    text = doc->get("text");
    if (text && text->is_nonempty_string()) {
      auto meta = doc->get("meta_info");
      if (auto n = meta ? completion_tokens(*meta) : std::nullopt) rec.reported_output_len = *n;
    }
  } else {
    take_usage(*doc, rec);
    auto choices = doc->get("choices");
    auto first = choices ? choices->at(0) : std::nullopt;
    if (backend == Backend::kOpenAI) {
      text = first ? first->get("text") : std::nullopt;
    } else {
      auto message = first ? first->get("message") : std::nullopt;
      text = message ? message->get("content") : std::nullopt;
    }
  }
  // The whole answer arrives at once: TTFT is the latency (sglang sets it only when there
  // is text, except for chat, which always sets it).
  if ((text && text->is_nonempty_string()) || backend == Backend::kOpenAIChat) {
    rec.got_token = true;
    rec.ttft_s = rec.latency_s;
    rec.last_token_s = now_s;
  }
  if (text && text->is_string()) set_text(rec, *text, /*cumulative=*/true);
  finish_stream(rec);
}

void fail_http(RequestRecord& rec, int status, std::string_view reason, std::string_view body) {
  std::string why = reason.empty() ? "HTTP " + std::to_string(status) : std::string(reason);
  fail(rec, why + ": " + std::string(body));
}

void fail_request(RequestRecord& rec, std::string_view error) { fail(rec, std::string(error)); }

}  // namespace pdctl::roles

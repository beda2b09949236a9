#include "roles/bench/bench_stream.h"

#include <iterator>
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

// The top-level members any backend reads, found in one walk over the chunk.
struct Top {
  std::optional<JsonView> error, object, message, text, meta_info, choices, usage;
};

Top read_top(const JsonView& doc) {
  static constexpr std::string_view kKeys[] = {"error", "object", "message", "text",
                                               "meta_info", "choices", "usage"};
  std::optional<JsonView> v[std::size(kKeys)];
  doc.get_all(kKeys, v);
  return {v[0], v[1], v[2], v[3], v[4], v[5], v[6]};
}

// An error object instead of output: {"error": {...}} (OpenAI, sglang) or
// {"object": "error", "message": ...} (vLLM-style). sglang.bench_serving would take such a
// chunk for an empty one and count the request a success; here it fails the request.
bool take_error(const JsonView& doc, const Top& top, RequestRecord& rec) {
  std::string message;
  if (const auto& e = top.error; e && e->kind() != JsonKind::kNull) {
    if (e->is_string()) {
      e->get_string(message);
    } else if (auto m = e->get("message"); m && m->is_string()) {
      m->get_string(message);
    } else {
      message = std::string(e->raw());
    }
  } else if (top.object && top.object->raw() == "\"error\"") {
    if (top.message && top.message->is_string()) top.message->get_string(message);
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
void take_usage(const Top& top, RequestRecord& rec) {
  if (top.usage) {
    if (auto n = completion_tokens(*top.usage)) rec.reported_output_len = *n;
  }
}

// choices[0], or nullopt.
std::optional<JsonView> first_choice(const Top& top) {
  return top.choices ? top.choices->at(0) : std::nullopt;
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
void sglang_chunk(const Top& top, double now_s, RequestRecord& rec, ChunkInfo& info) {
  const auto& text = top.text;
  if (!text || !text->is_nonempty_string()) return;
  std::optional<int> n = top.meta_info ? completion_tokens(*top.meta_info) : std::nullopt;
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
void completions_chunk(const Top& top, double now_s, RequestRecord& rec, ChunkInfo& info) {
  take_usage(top, rec);
  auto first = first_choice(top);
  auto text = first ? first->get("text") : std::nullopt;
  if (!text || !text->is_nonempty_string()) return;
  on_token_chunk(rec, now_s, info);
  set_text(rec, *text, /*cumulative=*/false);
}

// /v1/chat/completions: choices[0].delta.content.
void chat_chunk(const Top& top, double now_s, RequestRecord& rec, ChunkInfo& info) {
  take_usage(top, rec);
  auto first = first_choice(top);
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
  if (payload.empty() || payload.front() == ':') return info;
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
  const Top top = read_top(*doc);
  if (take_error(*doc, top, rec)) {
    info.failed = true;
    return info;
  }
  switch (backend) {
    case Backend::kSglang: sglang_chunk(top, now_s, rec, info); break;
    case Backend::kOpenAI: completions_chunk(top, now_s, rec, info); break;
    case Backend::kOpenAIChat: chat_chunk(top, now_s, rec, info); break;
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
  const Top top = read_top(*doc);
  if (take_error(*doc, top, rec)) return;
  std::optional<JsonView> text;
  if (backend == Backend::kSglang) {
    text = top.text;
    if (text && text->is_nonempty_string() && top.meta_info) {
      if (auto n = completion_tokens(*top.meta_info)) rec.reported_output_len = *n;
    }
  } else {
    take_usage(top, rec);
    auto first = first_choice(top);
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

Status warmup_status(std::span<const RequestRecord> warmup) {
  if (warmup.empty()) return Status::ok();
  for (const auto& r : warmup) {
    if (r.success) return Status::ok();
  }
  return Status::unavailable(
      "Warmup failed - Please make sure benchmark arguments are correctly specified. Error: " +
      warmup.front().error);
}

}  // namespace pdctl::roles

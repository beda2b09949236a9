#include "roles/worker/api_parsing.h"

#include <chrono>
#include <limits>
#include <random>

#include <fmt/format.h>

#include "engine/chat_template.h"
#include "roles/worker/api_fields.h"

namespace pdctl::worker {

using nlohmann::json;

namespace {

constexpr int64_t kIntMax = std::numeric_limits<int32_t>::max();
// SGLang's defaults: /generate's sampling_params.max_new_tokens, OpenAI completions' max_tokens.
constexpr int kGenerateDefaultMaxNewTokens = 128;
constexpr int kCompletionDefaultMaxTokens = 16;

double steady_now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Result<std::vector<int32_t>> tokenize_text(const ApiModel& model, const std::string& text, bool add_special) {
  if (!model.tokenizer) {
    return Status::invalid_argument("text input needs a tokenizer; this server runs with --skip-tokenizer-init (send token ids)");
  }
  return model.tokenizer->encode(text, add_special);
}

Status check_prompt_ids(const ApiModel& model, const std::vector<int32_t>& ids, const std::string& what) {
  if (ids.empty()) return Status::invalid_argument(what + " is empty");
  for (int32_t id : ids) {
    if (id < 0 || id >= model.vocab_size) {
      return Status::invalid_argument(
          fmt::format("{} holds token id {}, outside the vocabulary [0, {})", what, id, model.vocab_size));
    }
  }
  return Status::ok();
}

// max_new_tokens for a prompt: the requested number must fit in the context with the
// prompt (as OpenAI's and SGLang's message says); an unrequested one is `fallback`, cut to
// what fits (0 fallback: all that fits, OpenAI chat's rule).
Result<int> fit_max_tokens(const ApiModel& model, size_t prompt_len, std::optional<int> requested, int fallback) {
  const int64_t ctx = model.context_length;
  const int64_t plen = static_cast<int64_t>(prompt_len);
  if (plen >= ctx) {
    return Status::invalid_argument(fmt::format(
        "The input ({} tokens) is longer than the model's context length ({} tokens).", plen, ctx));
  }
  if (requested) {
    if (plen + *requested > ctx) {
      return Status::invalid_argument(fmt::format(
          "Requested token count exceeds the model's maximum context length of {} tokens. You requested a total of "
          "{} tokens: {} tokens from the input messages and {} tokens for the completion. Please reduce the number of "
          "tokens in the input messages or the completion to fit within the limit.",
          ctx, plen + *requested, plen, *requested));
    }
    return *requested;
  }
  const int64_t room = ctx - plen;
  return static_cast<int>(fallback > 0 ? std::min<int64_t>(fallback, room) : room);
}

// Field `key` of the body for item `i` of `count`: a list gives one entry per item, anything
// else applies to all. Null when absent.
const json* per_item(const json& body, const char* key, size_t i, size_t count, Status& err) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return nullptr;
  if (it->is_array()) {
    if (it->size() != count) {
      if (err.is_ok()) {
        err = Status::invalid_argument(
            fmt::format("'{}' has {} entries for {} prompts", key, it->size(), count));
      }
      return nullptr;
    }
    return &(*it)[i];
  }
  return &*it;
}

// Reads a scalar (per-item) field through a one-key FieldReader, for uniform messages.
template <class F>
auto read_scalar(const json* v, const char* key, Status& err, F&& read) -> decltype(read(std::declval<FieldReader&>(), key)) {
  if (!v) return std::nullopt;
  json wrapper = json::object();
  wrapper[key] = *v;
  FieldReader r(wrapper);
  auto out = read(r, key);
  if (!r.ok() && err.is_ok()) err = r.status();
  return out;
}

Status sampling_into(const SamplingSpec& spec, engine::GenerateRequest& req, const ApiModel& model) {
  req.sampling = spec.params;
  req.stop = spec.stop;
  req.skip_special_tokens = spec.skip_special_tokens;
  req.no_stop_trim = spec.no_stop_trim;
  req.detokenize = model.tokenizer != nullptr;
  if (!req.stop.empty() && !model.tokenizer) {
    return Status::invalid_argument("stop strings need a tokenizer; this server runs with --skip-tokenizer-init (use stop_token_ids)");
  }
  return req.sampling.validate(model.vocab_size);
}

// Appends `n` items for one prompt; sample j > 0 of a seeded request gets seed + j so that
// the samples differ yet stay reproducible.
void add_samples(std::vector<ItemSpec>& items, ItemSpec base, int prompt_index, int n, const std::string& rid_base,
                 bool numbered) {
  for (int j = 0; j < n; ++j) {
    ItemSpec it = base;
    it.prompt_index = prompt_index;
    it.sample_index = j;
    if (j > 0 && it.req.sampling.seed) *it.req.sampling.seed += static_cast<uint64_t>(j);
    it.req.rid = numbered ? fmt::format("{}-{}", rid_base, j) : rid_base;
    items.push_back(std::move(it));
  }
}

void refuse_common(FieldReader& r) {
  r.refuse("lora_path", "LoRA adapters are not implemented");
  r.refuse("image_data", "multimodal input is not implemented");
  r.refuse("video_data", "multimodal input is not implemented");
  r.refuse("audio_data", "multimodal input is not implemented");
  r.refuse("input_embeds", "embedding input is not implemented");
  r.refuse("session_params", "sessions are not implemented");
  r.refuse("return_hidden_states", "hidden states are not returned");
}

void read_bootstrap(const json& body, size_t i, size_t count, Bootstrap& b, Status& err) {
  b.host = read_scalar(per_item(body, "bootstrap_host", i, count, err), "bootstrap_host", err,
                       [](FieldReader& r, const char* k) { return r.string(k); });
  b.port = read_scalar(per_item(body, "bootstrap_port", i, count, err), "bootstrap_port", err,
                       [](FieldReader& r, const char* k) { return r.integer(k, 1, 65535); });
  b.room = read_scalar(per_item(body, "bootstrap_room", i, count, err), "bootstrap_room", err,
                       [](FieldReader& r, const char* k) {
                         return r.integer(k, 0, std::numeric_limits<int64_t>::max());
                       });
}

}  // namespace

std::string random_hex_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{:016x}{:016x}", rng(), rng());
}

int http_status_for(Errc code) {
  switch (code) {
    case Errc::kOk: return 200;
    case Errc::kInvalidArgument:
    case Errc::kOutOfRange:
    case Errc::kUnsupported:
    case Errc::kAlreadyExists: return 400;
    case Errc::kNotFound: return 404;
    case Errc::kResourceExhausted: return 429;
    case Errc::kUnavailable: return 503;
    case Errc::kTimeout: return 504;
    case Errc::kCancelled: return 499;
    case Errc::kCorrupt:
    case Errc::kIo:
    case Errc::kInternal: return 500;
  }
  return 500;
}

Status check_model_name(const json& body, const ApiModel& model) {
  FieldReader r(body);
  auto name = r.string("model");
  PDCTL_RETURN_IF_ERROR(r.status());
  if (name && *name != model.name) {
    return Status::not_found(fmt::format("The model '{}' does not exist", *name));
  }
  return Status::ok();
}

// ------------------------------------------------------------------------- /generate

Result<GenerateCall> parse_generate(const json& body, const ApiModel& model, RandomHex random_hex) {
  FieldReader top(body);
  refuse_common(top);
  GenerateCall call;
  if (auto v = top.boolean("stream")) call.stream = *v;
  if (auto v = top.boolean("return_text_in_logprobs")) call.return_text_in_logprobs = *v;
  PDCTL_RETURN_IF_ERROR(top.status());

  // The prompts: `text` (a string or a list) or `input_ids` (a list of ids or of lists).
  const json* text = top.raw("text");
  const json* ids = top.raw("input_ids");
  if ((text != nullptr) == (ids != nullptr)) {
    return Status::invalid_argument("give exactly one of 'text' and 'input_ids'");
  }
  std::vector<std::vector<int32_t>> prompts;
  if (text) {
    std::vector<std::string> texts;
    if (text->is_string()) {
      texts.push_back(text->get<std::string>());
    } else if (text->is_array() && !text->empty()) {
      call.batch = true;
      for (const json& t : *text) {
        if (!t.is_string()) return Status::invalid_argument("'text' must be a string or a list of strings");
        texts.push_back(t.get<std::string>());
      }
    } else {
      return Status::invalid_argument("'text' must be a string or a non-empty list of strings");
    }
    for (const std::string& t : texts) {
      PDCTL_ASSIGN_OR_RETURN(auto p, tokenize_text(model, t, /*add_special=*/true));
      prompts.push_back(std::move(p));
    }
  } else {
    if (!ids->is_array() || ids->empty()) return Status::invalid_argument("'input_ids' must be a non-empty list");
    if ((*ids)[0].is_array()) {
      call.batch = true;
      for (size_t i = 0; i < ids->size(); ++i) {
        json one = {{"input_ids", (*ids)[i]}};
        FieldReader r(one);
        auto p = r.int_list("input_ids", 0, kIntMax);
        PDCTL_RETURN_IF_ERROR(r.status().with_context(fmt::format("prompt {}", i)));
        prompts.push_back(p.value_or(std::vector<int32_t>{}));
      }
    } else {
      auto p = top.int_list("input_ids", 0, kIntMax);
      PDCTL_RETURN_IF_ERROR(top.status());
      prompts.push_back(std::move(*p));
    }
  }
  const size_t count = prompts.size();

  // sampling_params: one object for all prompts, or a list with one per prompt.
  const json* sp_all = top.raw("sampling_params");
  if (sp_all && !sp_all->is_object() && !sp_all->is_array()) {
    return Status::invalid_argument("'sampling_params' must be an object (or a list of objects, one per prompt)");
  }
  if (sp_all && sp_all->is_array() && !call.batch) {
    return Status::invalid_argument("'sampling_params' is a list but there is a single prompt");
  }
  const json* rid_field = top.raw("rid");
  if (rid_field && call.batch && !rid_field->is_array()) {
    return Status::invalid_argument("'rid' must be a list with one id per prompt for a batch");
  }

  const double arrival = steady_now_seconds();
  Status err;
  for (size_t i = 0; i < count; ++i) {
    const std::string what = call.batch ? fmt::format("prompt {}", i) : std::string("the prompt");
    PDCTL_RETURN_IF_ERROR(check_prompt_ids(model, prompts[i], what));
    static const json kEmpty = json::object();
    const json* sp = per_item(body, "sampling_params", i, count, err);
    PDCTL_RETURN_IF_ERROR(err);
    if (!sp) sp = &kEmpty;
    if (!sp->is_object()) return Status::invalid_argument("'sampling_params' entries must be objects");
    for (const auto& [key, value] : sp->items()) {
      if (!is_sampling_params_key(key)) {
        return Status::invalid_argument(fmt::format("unknown field 'sampling_params.{}'", key));
      }
    }
    FieldReader r(*sp, "sampling_params.");
    SamplingSpec spec;
    read_sampling(r, /*openai=*/false, spec);
    PDCTL_RETURN_IF_ERROR(r.status());
    if (i > 0 && spec.n != call.n) return Status::invalid_argument("'sampling_params.n' must be the same for every prompt");
    call.n = spec.n;

    ItemSpec item;
    item.req.input_ids = std::move(prompts[i]);
    item.req.arrival_time = arrival;
    item.req.stream = call.stream;
    PDCTL_RETURN_IF_ERROR(sampling_into(spec, item.req, model));
    PDCTL_ASSIGN_OR_RETURN(item.req.sampling.max_new_tokens,
                           fit_max_tokens(model, item.req.input_ids.size(), spec.max_new_tokens,
                                          kGenerateDefaultMaxNewTokens));
    auto ret_lp = read_scalar(per_item(body, "return_logprob", i, count, err), "return_logprob", err,
                              [](FieldReader& f, const char* k) { return f.boolean(k); });
    auto top_n = read_scalar(per_item(body, "top_logprobs_num", i, count, err), "top_logprobs_num", err,
                             [](FieldReader& f, const char* k) { return f.integer(k, 0, kMaxTopLogprobs); });
    auto start = read_scalar(per_item(body, "logprob_start_len", i, count, err), "logprob_start_len", err,
                             [](FieldReader& f, const char* k) { return f.integer(k, -1, kIntMax); });
    auto rid = read_scalar(per_item(body, "rid", i, count, err), "rid", err,
                           [](FieldReader& f, const char* k) { return f.string(k); });
    read_bootstrap(body, i, count, item.bootstrap, err);
    PDCTL_RETURN_IF_ERROR(err);
    const bool want_lp = ret_lp.value_or(false);
    item.req.sampling.return_logprob = want_lp;
    item.req.sampling.top_logprobs_num = want_lp ? static_cast<int>(top_n.value_or(0)) : 0;
    // SGLang computes prompt logprobs only for return_logprob with a start >= 0.
    item.req.logprob_start_len = want_lp ? static_cast<int>(start.value_or(-1)) : -1;
    if (item.req.logprob_start_len >= static_cast<int>(item.req.input_ids.size())) {
      return Status::invalid_argument(fmt::format("'logprob_start_len' = {} is not shorter than the prompt ({} tokens)",
                                                  item.req.logprob_start_len, item.req.input_ids.size()));
    }
    if (rid && rid->empty()) return Status::invalid_argument("'rid' must not be empty");
    add_samples(call.items, std::move(item), static_cast<int>(i), call.n, rid ? *rid : random_hex(), call.n > 1);
  }
  if (call.n > 1) call.batch = true;
  return call;
}

// ------------------------------------------------------------------------- OpenAI

namespace {

// The fields both OpenAI routes share, into `call` and `spec`.
Status read_openai_common(const json& body, FieldReader& r, OpenAiCall& call, SamplingSpec& spec) {
  refuse_common(r);
  PDCTL_RETURN_IF_ERROR(r.status());
  if (auto m = r.string("model")) call.model = *m;
  if (auto v = r.boolean("stream")) call.stream = *v;
  if (const json* so = r.raw("stream_options")) {
    if (!so->is_object()) return Status::invalid_argument("'stream_options' must be an object");
    FieldReader s(*so, "stream_options.");
    call.include_usage = s.boolean("include_usage").value_or(false);
    call.continuous_usage = s.boolean("continuous_usage_stats").value_or(false);
    PDCTL_RETURN_IF_ERROR(s.status());
  }
  if (auto v = r.boolean("return_token_ids")) call.return_token_ids = *v;
  read_sampling(r, /*openai=*/true, spec);
  if (const json* rf = r.raw("response_format")) {
    if (!rf->is_object()) return Status::invalid_argument("'response_format' must be an object");
    auto type = rf->find("type");
    if (type == rf->end() || !type->is_string() || type->get<std::string>() != "text") {
      return Status::invalid_argument(
          "'response_format' other than {\"type\": \"text\"} is not supported: structured output is not implemented");
    }
  }
  PDCTL_RETURN_IF_ERROR(r.status());
  call.n = spec.n;
  (void)body;
  return Status::ok();
}

std::optional<int> read_max_tokens(FieldReader& r, bool chat) {
  // Chat: max_completion_tokens wins over the deprecated max_tokens, as in SGLang.
  if (chat) {
    if (auto v = r.integer("max_completion_tokens", 1, kIntMax)) return static_cast<int>(*v);
  }
  if (auto v = r.integer("max_tokens", 1, kIntMax)) return static_cast<int>(*v);
  return std::nullopt;
}

std::string openai_id(FieldReader& r, bool chat, RandomHex random_hex) {
  if (auto rid = r.string("rid"); rid && !rid->empty()) return *rid;
  return (chat ? "chatcmpl-" : "cmpl-") + random_hex();
}

}  // namespace

Result<OpenAiCall> parse_completion(const json& body, const ApiModel& model, RandomHex random_hex) {
  PDCTL_RETURN_IF_ERROR(check_model_name(body, model));
  FieldReader r(body);
  OpenAiCall call;
  SamplingSpec spec;
  PDCTL_RETURN_IF_ERROR(read_openai_common(body, r, call, spec));
  auto max_tokens = read_max_tokens(r, false);
  if (auto v = r.boolean("echo")) call.echo = *v;
  if (auto v = r.integer("logprobs", 0, kMaxTopLogprobs)) {
    call.logprobs = true;
    call.top_logprobs = static_cast<int>(*v);
  }
  if (auto best_of = r.integer("best_of", 1, kMaxN); best_of && *best_of != call.n) {
    r.fail("'best_of' other than 'n' is not supported");
  }
  r.refuse("suffix", "insertion (suffix) is not implemented");
  PDCTL_RETURN_IF_ERROR(r.status());
  if (call.echo && call.logprobs) {
    return Status::invalid_argument("'echo' with 'logprobs' is not supported (use /generate with logprob_start_len)");
  }
  call.id = openai_id(r, false, random_hex);
  PDCTL_RETURN_IF_ERROR(r.status());

  // prompt: a string, a list of strings, a list of ids, or a list of lists of ids.
  const json* prompt = r.raw("prompt");
  if (!prompt) return Status::invalid_argument("'prompt' is required");
  std::vector<std::vector<int32_t>> prompts;
  auto add_text = [&](const std::string& t) -> Status {
    PDCTL_ASSIGN_OR_RETURN(auto ids, tokenize_text(model, t, /*add_special=*/true));
    prompts.push_back(std::move(ids));
    call.echo_text.push_back(t);
    return Status::ok();
  };
  auto add_ids = [&](const json& list) -> Status {
    json one = {{"prompt", list}};
    FieldReader f(one);
    auto ids = f.int_list("prompt", 0, kIntMax);
    PDCTL_RETURN_IF_ERROR(f.status());
    if (call.echo) {
      if (!model.tokenizer) return Status::invalid_argument("'echo' needs a tokenizer");
      call.echo_text.push_back(model.tokenizer->decode(*ids, /*skip_special_tokens=*/true));
    }
    prompts.push_back(std::move(*ids));
    return Status::ok();
  };
  if (prompt->is_string()) {
    PDCTL_RETURN_IF_ERROR(add_text(prompt->get<std::string>()));
  } else if (prompt->is_array() && !prompt->empty()) {
    const json& first = (*prompt)[0];
    if (first.is_string()) {
      for (const json& p : *prompt) {
        if (!p.is_string()) return Status::invalid_argument("'prompt' mixes strings and other values");
        PDCTL_RETURN_IF_ERROR(add_text(p.get<std::string>()));
      }
    } else if (first.is_array()) {
      for (const json& p : *prompt) {
        if (!p.is_array()) return Status::invalid_argument("'prompt' mixes lists and other values");
        PDCTL_RETURN_IF_ERROR(add_ids(p));
      }
    } else {
      PDCTL_RETURN_IF_ERROR(add_ids(*prompt));
    }
  } else {
    return Status::invalid_argument("'prompt' must be a string, a list of strings, or token ids");
  }

  const double arrival = steady_now_seconds();
  const bool numbered = prompts.size() * static_cast<size_t>(call.n) > 1;
  for (size_t p = 0; p < prompts.size(); ++p) {
    const std::string what = prompts.size() > 1 ? fmt::format("prompt {}", p) : std::string("the prompt");
    PDCTL_RETURN_IF_ERROR(check_prompt_ids(model, prompts[p], what));
    ItemSpec item;
    item.req.input_ids = std::move(prompts[p]);
    item.req.arrival_time = arrival;
    item.req.stream = call.stream;
    PDCTL_RETURN_IF_ERROR(sampling_into(spec, item.req, model));
    PDCTL_ASSIGN_OR_RETURN(item.req.sampling.max_new_tokens,
                           fit_max_tokens(model, item.req.input_ids.size(),
                                          max_tokens ? max_tokens : std::optional<int>(kCompletionDefaultMaxTokens), 0));
    item.req.sampling.return_logprob = call.logprobs;
    item.req.sampling.top_logprobs_num = call.top_logprobs;
    Status bootstrap_err;  // PD: the router's bootstrap fields, one per prompt when a list
    read_bootstrap(body, p, prompts.size(), item.bootstrap, bootstrap_err);
    PDCTL_RETURN_IF_ERROR(bootstrap_err);
    add_samples(call.items, std::move(item), static_cast<int>(p), call.n, call.id, /*numbered=*/false);
  }
  // Each choice's rid is the response id plus its choice index (prompt p, sample j -> p * n + j),
  // so that /abort_request and the logs name a choice the way the client sees it.
  if (numbered) {
    for (size_t k = 0; k < call.items.size(); ++k) call.items[k].req.rid = fmt::format("{}-{}", call.id, k);
  }
  return call;
}

Result<OpenAiCall> parse_chat(const json& body, const ApiModel& model, RandomHex random_hex) {
  PDCTL_RETURN_IF_ERROR(check_model_name(body, model));
  FieldReader r(body);
  OpenAiCall call;
  call.chat = true;
  SamplingSpec spec;
  PDCTL_RETURN_IF_ERROR(read_openai_common(body, r, call, spec));
  auto max_tokens = read_max_tokens(r, true);
  call.logprobs = r.boolean("logprobs").value_or(false);
  if (auto v = r.integer("top_logprobs", 0, kMaxTopLogprobs)) {
    if (!call.logprobs && *v > 0) r.fail("'top_logprobs' needs 'logprobs': true");
    call.top_logprobs = static_cast<int>(*v);
  }
  r.refuse("tools", "tools and tool calls are not implemented");
  r.refuse("functions", "function calling is not implemented");
  r.refuse("continue_final_message", "continuing the final assistant message is not implemented");
  r.refuse("input_ids", "token ids in place of 'messages' are not supported here (use /generate)");
  if (const json* tc = r.raw("tool_choice")) {
    if (!tc->is_string() || (tc->get<std::string>() != "none" && tc->get<std::string>() != "auto")) {
      r.fail("'tool_choice' is not supported: tools are not implemented");
    }
  }
  engine::ChatOptions options;
  if (const json* kw = r.raw("chat_template_kwargs")) {
    if (!kw->is_object()) return Status::invalid_argument("'chat_template_kwargs' must be an object");
    FieldReader k(*kw, "chat_template_kwargs.");
    // Other keys are ignored, as a Jinja template ignores variables it does not use.
    if (auto v = k.boolean("enable_thinking")) options.enable_thinking = *v;
    PDCTL_RETURN_IF_ERROR(k.status());
  }
  call.id = openai_id(r, true, random_hex);
  PDCTL_RETURN_IF_ERROR(r.status());

  const json* messages = r.raw("messages");
  if (!messages || !messages->is_array() || messages->empty()) {
    return Status::invalid_argument("'messages' must be a non-empty list");
  }
  if (!model.tokenizer) {
    return Status::invalid_argument("chat needs a tokenizer and its chat template; this server runs with --skip-tokenizer-init");
  }
  auto parsed = engine::parse_openai_messages(*messages);
  if (!parsed) return std::move(parsed).status().with_context("messages");
  auto rendered = model.tokenizer->render_chat(*parsed, options);
  if (!rendered) return std::move(rendered).status().with_context("chat template");
  // Transformers' apply_chat_template encodes without special tokens: the template wrote
  // BOS itself where the model wants one.
  std::vector<int32_t> ids = model.tokenizer->encode(rendered->text, /*add_special_tokens=*/false);
  PDCTL_RETURN_IF_ERROR(check_prompt_ids(model, ids, "the rendered prompt"));

  ItemSpec item;
  item.req.input_ids = std::move(ids);
  item.req.arrival_time = steady_now_seconds();
  item.req.stream = call.stream;
  PDCTL_RETURN_IF_ERROR(sampling_into(spec, item.req, model));
  PDCTL_ASSIGN_OR_RETURN(item.req.sampling.max_new_tokens,
                         fit_max_tokens(model, item.req.input_ids.size(), max_tokens, 0));
  item.req.sampling.return_logprob = call.logprobs;
  item.req.sampling.top_logprobs_num = call.logprobs ? call.top_logprobs : 0;
  Status bootstrap_err;  // PD: the router's bootstrap fields
  read_bootstrap(body, 0, 1, item.bootstrap, bootstrap_err);
  PDCTL_RETURN_IF_ERROR(bootstrap_err);
  add_samples(call.items, std::move(item), 0, call.n, call.id, call.n > 1);
  return call;
}

// ------------------------------------------------------------------------- tokenize

Result<TokenizeCall> parse_tokenize(const json& body, const ApiModel& model) {
  PDCTL_RETURN_IF_ERROR(check_model_name(body, model));
  if (!model.tokenizer) return Status::invalid_argument("tokenization needs a tokenizer; this server runs with --skip-tokenizer-init");
  FieldReader r(body);
  const bool add_special = r.boolean("add_special_tokens").value_or(true);
  PDCTL_RETURN_IF_ERROR(r.status());
  const json* prompt = r.raw("prompt");
  const json* messages = r.raw("messages");
  if ((prompt != nullptr) == (messages != nullptr)) {
    return Status::invalid_argument("give exactly one of 'prompt' and 'messages'");
  }
  TokenizeCall out;
  if (messages) {
    auto parsed = engine::parse_openai_messages(*messages);
    if (!parsed) return std::move(parsed).status().with_context("messages");
    auto rendered = model.tokenizer->render_chat(*parsed, engine::ChatOptions{});
    if (!rendered) return std::move(rendered).status().with_context("chat template");
    out.tokens.push_back(model.tokenizer->encode(rendered->text, /*add_special_tokens=*/false));
    return out;
  }
  if (prompt->is_string()) {
    out.tokens.push_back(model.tokenizer->encode(prompt->get<std::string>(), add_special));
  } else if (prompt->is_array()) {
    out.batch = true;
    for (const json& p : *prompt) {
      if (!p.is_string()) return Status::invalid_argument("'prompt' must be a string or a list of strings");
      out.tokens.push_back(model.tokenizer->encode(p.get<std::string>(), add_special));
    }
  } else {
    return Status::invalid_argument("'prompt' must be a string or a list of strings");
  }
  return out;
}

Result<json> run_detokenize(const json& body, const ApiModel& model) {
  PDCTL_RETURN_IF_ERROR(check_model_name(body, model));
  if (!model.tokenizer) return Status::invalid_argument("detokenization needs a tokenizer; this server runs with --skip-tokenizer-init");
  FieldReader r(body);
  const bool skip = r.boolean("skip_special_tokens").value_or(true);
  PDCTL_RETURN_IF_ERROR(r.status());
  const json* tokens = r.raw("tokens");
  if (!tokens || !tokens->is_array()) return Status::invalid_argument("'tokens' must be a list of token ids (or of lists)");
  auto decode_list = [&](const json& list) -> Result<std::string> {
    json one = {{"tokens", list}};
    FieldReader f(one);
    // The tokenizer's own vocabulary: an id it does not know is the client's error, not ''.
    const auto max_id = static_cast<int64_t>(model.tokenizer->vocab_size()) - 1;
    auto ids = f.int_list("tokens", 0, max_id);
    PDCTL_RETURN_IF_ERROR(f.status());
    return model.tokenizer->decode(*ids, skip);
  };
  json text;
  if (!tokens->empty() && (*tokens)[0].is_array()) {
    text = json::array();
    for (const json& l : *tokens) {
      PDCTL_ASSIGN_OR_RETURN(std::string t, decode_list(l));
      text.push_back(std::move(t));
    }
  } else {
    PDCTL_ASSIGN_OR_RETURN(std::string t, decode_list(*tokens));
    text = std::move(t);
  }
  return json{{"text", std::move(text)}};
}

}  // namespace pdctl::worker

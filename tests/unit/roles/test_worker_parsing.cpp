// The worker API's request parsing and reply formatting as pure functions: field names and
// meanings as SGLang's and OpenAI's, and a 4xx error naming the field for every bad input.
#include <doctest/doctest.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "roles/worker/api_fields.h"
#include "roles/worker/api_formatting.h"
#include "roles/worker/api_parsing.h"

using namespace pdctl;
using namespace pdctl::worker;
using nlohmann::json;

namespace {

const engine::Tokenizer& byte_tok() {
  static const engine::Tokenizer t = engine::Tokenizer::byte_level();
  return t;
}

ApiModel byte_model(int64_t ctx = 256) {
  ApiModel m;
  m.name = std::string(1, 'm');  // not = "m": GCC 12 -Wrestrict false positive (PR105329) at -O3
  m.tokenizer = &byte_tok();
  m.context_length = ctx;
  m.vocab_size = 512;
  return m;
}

std::string fixed_hex() { return "abc"; }

template <class T>
std::string error_of(const Result<T>& r) {
  REQUIRE_FALSE(r.has_value());
  return r.status().message();
}

}  // namespace

TEST_CASE("parse_json_object: malformed, non-object and too deep bodies are 400") {
  CHECK(parse_json_object("{\"a\": 1}").has_value());
  auto bad = parse_json_object("{\"a\": ");
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.status().code() == Errc::kInvalidArgument);
  CHECK_FALSE(parse_json_object("[1, 2]").has_value());
  CHECK_FALSE(parse_json_object("\"x\"").has_value());
  std::string deep(1000, '[');
  CHECK(error_of(parse_json_object(deep)).find("nests deeper") != std::string::npos);
  // Brackets inside strings do not count.
  CHECK(json_depth(R"({"a": "[[[[[[[[\"[[["})") == 1);
  CHECK(http_status_for(Errc::kInvalidArgument) == 400);
  CHECK(http_status_for(Errc::kResourceExhausted) == 429);
  CHECK(http_status_for(Errc::kUnavailable) == 503);
  CHECK(http_status_for(Errc::kNotFound) == 404);
}

TEST_CASE("parse_generate: text or input_ids, SGLang's sampling_params, defaults") {
  ApiModel m = byte_model();
  auto call = parse_generate(json{{"text", "hi"},
                                  {"sampling_params",
                                   {{"temperature", 0},
                                    {"top_p", 0.5},
                                    {"top_k", 5},
                                    {"min_p", 0.1},
                                    {"max_new_tokens", 7},
                                    {"stop", "x"},
                                    {"stop_token_ids", {9}},
                                    {"ignore_eos", true},
                                    {"repetition_penalty", 1.1},
                                    {"frequency_penalty", 0.5},
                                    {"presence_penalty", -0.5},
                                    {"skip_special_tokens", false},
                                    {"no_stop_trim", true},
                                    {"sampling_seed", 42}}},
                                  {"rid", "r1"}},
                             m, fixed_hex);
  REQUIRE_MESSAGE(call.has_value(), call.status().message());
  REQUIRE(call->items.size() == 1);
  const engine::GenerateRequest& r = call->items[0].req;
  CHECK_FALSE(call->batch);
  CHECK(r.rid == "r1");
  CHECK(r.input_ids == byte_tok().encode("hi", true));  // BOS added, as SGLang's encode
  CHECK(r.sampling.temperature == 0);
  CHECK(r.sampling.top_p == doctest::Approx(0.5));
  CHECK(r.sampling.top_k == 5);
  CHECK(r.sampling.min_p == doctest::Approx(0.1));
  CHECK(r.sampling.max_new_tokens == 7);
  CHECK(r.stop == std::vector<std::string>{"x"});
  CHECK(r.sampling.stop_token_ids == std::vector<int32_t>{9});
  CHECK(r.sampling.ignore_eos);
  CHECK(r.sampling.repetition_penalty == doctest::Approx(1.1));
  CHECK(r.sampling.frequency_penalty == doctest::Approx(0.5));
  CHECK(r.sampling.presence_penalty == doctest::Approx(-0.5));
  CHECK_FALSE(r.skip_special_tokens);
  CHECK(r.no_stop_trim);
  CHECK(r.sampling.seed == 42u);

  // Defaults: 128 new tokens (cut to what fits), a random rid, no logprobs.
  auto d = parse_generate(json{{"input_ids", {1, 5, 6}}}, byte_model(100), fixed_hex);
  REQUIRE(d.has_value());
  CHECK(d->items[0].req.sampling.max_new_tokens == 97);
  CHECK(d->items[0].req.rid == "abc");
  CHECK(d->items[0].req.input_ids == std::vector<int32_t>{1, 5, 6});
  CHECK(d->items[0].req.logprob_start_len == -1);
  CHECK_FALSE(d->items[0].req.sampling.return_logprob);
}

TEST_CASE("parse_generate: batches, n samples, per-item logprob fields") {
  ApiModel m = byte_model();
  auto b = parse_generate(json{{"text", {"a", "b"}},
                               {"rid", {"x", "y"}},
                               {"return_logprob", {true, false}},
                               {"top_logprobs_num", 2},
                               {"logprob_start_len", 0},
                               {"sampling_params", {{"max_new_tokens", 3}}}},
                          m, fixed_hex);
  REQUIRE_MESSAGE(b.has_value(), b.status().message());
  CHECK(b->batch);
  REQUIRE(b->items.size() == 2);
  CHECK(b->items[0].req.rid == "x");
  CHECK(b->items[1].req.rid == "y");
  CHECK(b->items[0].req.sampling.return_logprob);
  CHECK(b->items[0].req.sampling.top_logprobs_num == 2);
  CHECK(b->items[0].req.logprob_start_len == 0);
  CHECK_FALSE(b->items[1].req.sampling.return_logprob);
  CHECK(b->items[1].req.logprob_start_len == -1);

  // n = 3: prompt-major samples; seeded samples get seed + j.
  auto n = parse_generate(json{{"input_ids", {{1, 4}, {1, 5}}},
                               {"rid", {"p", "q"}},
                               {"sampling_params", {{"n", 3}, {"sampling_seed", 10}}}},
                          m, fixed_hex);
  REQUIRE_MESSAGE(n.has_value(), n.status().message());
  REQUIRE(n->items.size() == 6);
  CHECK(n->n == 3);
  CHECK(n->items[0].req.rid == "p-0");
  CHECK(n->items[2].req.rid == "p-2");
  CHECK(n->items[3].req.rid == "q-0");
  CHECK(n->items[4].prompt_index == 1);
  CHECK(n->items[4].sample_index == 1);
  CHECK(n->items[4].req.sampling.seed == 11u);
  CHECK(n->items[3].req.input_ids == std::vector<int32_t>{1, 5});

  // Per-prompt sampling_params.
  auto per = parse_generate(json{{"text", {"a", "b"}},
                                 {"sampling_params", {{{"max_new_tokens", 1}}, {{"max_new_tokens", 2}}}}},
                            m, fixed_hex);
  REQUIRE(per.has_value());
  CHECK(per->items[0].req.sampling.max_new_tokens == 1);
  CHECK(per->items[1].req.sampling.max_new_tokens == 2);
}

TEST_CASE("parse_generate: every bad input is a 400 naming the problem") {
  ApiModel m = byte_model(64);
  auto err = [&](const json& body) { return error_of(parse_generate(body, m, fixed_hex)); };
  CHECK(err(json::object()).find("exactly one of 'text' and 'input_ids'") != std::string::npos);
  CHECK(err(json{{"text", "a"}, {"input_ids", {1}}}).find("exactly one") != std::string::npos);
  CHECK(err(json{{"text", 5}}).find("'text'") != std::string::npos);
  CHECK(err(json{{"input_ids", {1, "x"}}}).find("'input_ids'") != std::string::npos);
  CHECK(err(json{{"input_ids", {1, 600}}}).find("vocabulary") != std::string::npos);
  CHECK(err(json{{"input_ids", {1, -1}}}).find("out of range") != std::string::npos);
  CHECK(err(json{{"input_ids", json::array()}}).find("non-empty") != std::string::npos);
  CHECK(err(json{{"text", "a"}, {"sampling_params", {{"temperature", "hot"}}}})
            .find("'sampling_params.temperature' must be a number") != std::string::npos);
  CHECK(err(json{{"text", "a"}, {"sampling_params", {{"temperature", -1}}}}).find("temperature") != std::string::npos);
  CHECK(err(json{{"text", "a"}, {"sampling_params", {{"top_p", 0}}}}).find("top_p") != std::string::npos);
  CHECK(err(json{{"text", "a"}, {"sampling_params", {{"max_new_tokens", -5}}}}).find("max_new_tokens") !=
        std::string::npos);
  CHECK(err(json{{"text", "a"}, {"sampling_params", {{"max_new_tokens", 1.5}}}}).find("integer") != std::string::npos);
  CHECK(err(json{{"text", "a"}, {"sampling_params", {{"max_new_tokens", 1e12}}}}).find("out of range") !=
        std::string::npos);
  CHECK(err(json{{"text", "a"}, {"sampling_params", {{"max_new_tokens", 100}}}})
            .find("maximum context length of 64 tokens") != std::string::npos);
  CHECK(err(json{{"text", "a"}, {"sampling_params", {{"bogus", 1}}}}).find("unknown field 'sampling_params.bogus'") !=
        std::string::npos);
  CHECK(err(json{{"text", "a"}, {"sampling_params", {{"regex", "a+"}}}}).find("structured output") != std::string::npos);
  CHECK(err(json{{"text", "a"}, {"sampling_params", {{"json_schema", "{}"}}}}).find("not supported") !=
        std::string::npos);
  CHECK(err(json{{"text", "a"}, {"sampling_params", {{"logit_bias", {{"5", 1}}}}}}).find("logit") != std::string::npos);
  CHECK(err(json{{"text", "a"}, {"sampling_params", {{"min_new_tokens", 3}}}}).find("min_new_tokens") !=
        std::string::npos);
  CHECK(err(json{{"text", "a"}, {"sampling_params", {{"n", 0}}}}).find("'sampling_params.n'") != std::string::npos);
  CHECK(err(json{{"text", "a"}, {"sampling_params", 3}}).find("'sampling_params' must be an object") !=
        std::string::npos);
  CHECK(err(json{{"text", {"a", "b"}}, {"rid", "one"}}).find("'rid' must be a list") != std::string::npos);
  CHECK(err(json{{"text", {"a", "b"}}, {"rid", {"one"}}}).find("2 prompts") != std::string::npos);
  CHECK(err(json{{"text", "a"}, {"stream", "yes"}}).find("'stream' must be a boolean") != std::string::npos);
  CHECK(err(json{{"text", "a"}, {"image_data", "x"}}).find("multimodal") != std::string::npos);
  CHECK(err(json{{"text", "a"}, {"return_logprob", true}, {"logprob_start_len", 10}}).find("logprob_start_len") !=
        std::string::npos);
  CHECK(err(json{{"text", std::string(80, 'x')}}).find("longer than the model's context length") != std::string::npos);
  // A null field counts as absent (pydantic's Optional).
  CHECK(parse_generate(json{{"text", "a"}, {"sampling_params", {{"temperature", nullptr}}}}, m, fixed_hex).has_value());
}

TEST_CASE("parse_generate: --skip-tokenizer-init takes ids only and refuses text and stop strings") {
  ApiModel m = byte_model();
  m.tokenizer = nullptr;
  auto ok = parse_generate(json{{"input_ids", {1, 2, 3}}}, m, fixed_hex);
  REQUIRE(ok.has_value());
  CHECK_FALSE(ok->items[0].req.detokenize);
  CHECK(error_of(parse_generate(json{{"text", "a"}}, m, fixed_hex)).find("--skip-tokenizer-init") != std::string::npos);
  CHECK(error_of(parse_generate(json{{"input_ids", {1}}, {"sampling_params", {{"stop", "x"}}}}, m, fixed_hex))
            .find("stop strings need a tokenizer") != std::string::npos);
}

TEST_CASE("parse_completion: OpenAI fields, prompt forms, n, ids") {
  ApiModel m = byte_model();
  auto c = parse_completion(json{{"model", "m"},
                                 {"prompt", "hello"},
                                 {"max_tokens", 5},
                                 {"temperature", 0.7},
                                 {"top_p", 0.9},
                                 {"n", 2},
                                 {"stop", {"a", "b"}},
                                 {"seed", 7},
                                 {"logprobs", 3},
                                 {"stream", true},
                                 {"stream_options", {{"include_usage", true}}},
                                 {"top_k", 4},
                                 {"user", "ignored"}},
                            m, fixed_hex);
  REQUIRE_MESSAGE(c.has_value(), c.status().message());
  CHECK(c->id == "cmpl-abc");
  CHECK(c->stream);
  CHECK(c->include_usage);
  CHECK(c->logprobs);
  CHECK(c->top_logprobs == 3);
  REQUIRE(c->items.size() == 2);
  CHECK(c->items[0].req.rid == "cmpl-abc-0");
  CHECK(c->items[1].req.rid == "cmpl-abc-1");
  CHECK(c->items[0].req.sampling.seed == 7u);
  CHECK(c->items[1].req.sampling.seed == 8u);
  CHECK(c->items[0].req.sampling.max_new_tokens == 5);
  CHECK(c->items[0].req.sampling.top_k == 4);
  CHECK(c->items[0].req.sampling.return_logprob);
  CHECK(c->items[0].req.sampling.top_logprobs_num == 3);
  CHECK(c->items[0].req.stop == std::vector<std::string>{"a", "b"});

  // OpenAI's default max_tokens is 16; the model field may be absent.
  auto d = parse_completion(json{{"prompt", {1, 2, 3}}}, m, fixed_hex);
  REQUIRE(d.has_value());
  CHECK(d->items[0].req.sampling.max_new_tokens == 16);
  CHECK(d->items[0].req.rid == "cmpl-abc");
  auto lists = parse_completion(json{{"prompt", {{1, 2}, {1, 3}}}}, m, fixed_hex);
  REQUIRE(lists.has_value());
  CHECK(lists->items.size() == 2);
  CHECK(lists->items[1].prompt_index == 1);
  auto strings = parse_completion(json{{"prompt", {"x", "y"}}, {"echo", true}}, m, fixed_hex);
  REQUIRE(strings.has_value());
  CHECK(strings->echo_text == std::vector<std::string>{"x", "y"});
}

TEST_CASE("parse_completion: errors - unknown model 404, unsupported fields 400") {
  ApiModel m = byte_model(64);
  auto st = [&](const json& body) {
    auto r = parse_completion(body, m, fixed_hex);
    REQUIRE_FALSE(r.has_value());
    return r.status();
  };
  Status nf = st(json{{"model", "gpt-4"}, {"prompt", "a"}});
  CHECK(nf.code() == Errc::kNotFound);
  CHECK(http_status_for(nf.code()) == 404);
  CHECK(nf.message().find("gpt-4") != std::string::npos);
  CHECK(st(json{{"model", 3}, {"prompt", "a"}}).message().find("'model' must be a string") != std::string::npos);
  CHECK(st(json{{"max_tokens", 4}}).message().find("'prompt' is required") != std::string::npos);
  CHECK(st(json{{"prompt", json::array()}}).message().find("'prompt'") != std::string::npos);
  CHECK(st(json{{"prompt", "a"}, {"max_tokens", 0}}).message().find("max_tokens") != std::string::npos);
  CHECK(st(json{{"prompt", "a"}, {"max_tokens", 1000}}).message().find("maximum context length") != std::string::npos);
  CHECK(st(json{{"prompt", "a"}, {"n", 1000}}).message().find("'n'") != std::string::npos);
  CHECK(st(json{{"prompt", "a"}, {"logprobs", 50}}).message().find("logprobs") != std::string::npos);
  CHECK(st(json{{"prompt", "a"}, {"suffix", "z"}}).message().find("suffix") != std::string::npos);
  CHECK(st(json{{"prompt", "a"}, {"best_of", 3}}).message().find("best_of") != std::string::npos);
  CHECK(st(json{{"prompt", "a"}, {"regex", "[a-z]+"}}).message().find("structured output") != std::string::npos);
  CHECK(st(json{{"prompt", "a"}, {"response_format", {{"type", "json_object"}}}}).message().find("response_format") !=
        std::string::npos);
  CHECK(st(json{{"prompt", "a"}, {"logit_bias", {{"1", 5}}}}).message().find("logit") != std::string::npos);
  CHECK(st(json{{"prompt", "a"}, {"stop", 5}}).message().find("'stop'") != std::string::npos);
  CHECK(st(json{{"prompt", "a"}, {"echo", true}, {"logprobs", 1}}).message().find("echo") != std::string::npos);
  // Fine: an empty logit_bias, response_format text, best_of == n.
  CHECK(parse_completion(json{{"prompt", "a"}, {"logit_bias", json::object()}, {"response_format", {{"type", "text"}}},
                              {"best_of", 1}},
                         m, fixed_hex)
            .has_value());
}

TEST_CASE("parse_chat: the model's template, max tokens to the end of the context, refusals") {
  const std::string dir = std::string(PDCTL_SHARED_DIR) + "/tokenizers/llama3";
  if (!std::filesystem::exists(dir)) {
    MESSAGE("skipped: " << dir << " is absent");
    return;
  }
  static const engine::Tokenizer llama = *engine::Tokenizer::load(dir);
  ApiModel m;
  m.name = "m";
  m.tokenizer = &llama;
  m.context_length = 512;
  m.vocab_size = 128256;
  auto c = parse_chat(json{{"messages", {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hi"}}}},
                           {"max_completion_tokens", 9},
                           {"max_tokens", 3},
                           {"logprobs", true},
                           {"top_logprobs", 2}},
                      m, fixed_hex);
  REQUIRE_MESSAGE(c.has_value(), c.status().message());
  CHECK(c->chat);
  CHECK(c->id == "chatcmpl-abc");
  const auto& ids = c->items[0].req.input_ids;
  // The template writes <|begin_of_text|> once; it is not doubled.
  REQUIRE(ids.size() > 2);
  CHECK(ids[0] == llama.bos_id());
  CHECK(ids[1] != llama.bos_id());
  CHECK(llama.decode(ids, false).find("<|start_header_id|>assistant<|end_header_id|>") != std::string::npos);
  CHECK(c->items[0].req.sampling.max_new_tokens == 9);  // max_completion_tokens wins
  CHECK(c->items[0].req.sampling.top_logprobs_num == 2);

  auto d = parse_chat(json{{"messages", {{{"role", "user"}, {"content", "Hi"}}}}}, m, fixed_hex);
  REQUIRE(d.has_value());
  CHECK(d->items[0].req.sampling.max_new_tokens == 512 - static_cast<int>(d->items[0].req.input_ids.size()));

  auto err = [&](const json& body) { return error_of(parse_chat(body, m, fixed_hex)); };
  const json msgs = {{{"role", "user"}, {"content", "Hi"}}};
  CHECK(err(json{{"messages", json::array()}}).find("'messages'") != std::string::npos);
  CHECK(err(json{{"messages", {{{"role", "robot"}, {"content", "x"}}}}}).find("messages") != std::string::npos);
  CHECK(err(json{{"messages", msgs}, {"tools", {{{"type", "function"}}}}}).find("tools") != std::string::npos);
  CHECK(err(json{{"messages", msgs}, {"top_logprobs", 2}}).find("needs 'logprobs'") != std::string::npos);
  CHECK(err(json{{"messages", msgs}, {"response_format", {{"type", "json_schema"}}}}).find("response_format") !=
        std::string::npos);
  CHECK(err(json{{"messages", msgs}, {"max_tokens", 100000}}).find("maximum context length") != std::string::npos);

  // The byte-level tokenizer has no chat template: 400 naming the problem.
  ApiModel b = byte_model();
  CHECK(error_of(parse_chat(json{{"messages", msgs}}, b, fixed_hex)).find("chat template") != std::string::npos);
}

TEST_CASE("tokenize and detokenize") {
  ApiModel m = byte_model();
  auto t = parse_tokenize(json{{"prompt", "ab"}}, m);
  REQUIRE(t.has_value());
  CHECK_FALSE(t->batch);
  CHECK(t->tokens[0] == byte_tok().encode("ab", true));
  auto t2 = parse_tokenize(json{{"prompt", {"ab", "c"}}, {"add_special_tokens", false}}, m);
  REQUIRE(t2.has_value());
  CHECK(t2->batch);
  CHECK(t2->tokens[1] == byte_tok().encode("c", false));
  auto d = run_detokenize(json{{"tokens", byte_tok().encode("hey", true)}}, m);
  REQUIRE(d.has_value());
  CHECK((*d)["text"] == "hey");
  auto d2 = run_detokenize(json{{"tokens", {byte_tok().encode("a", false), byte_tok().encode("b", false)}}}, m);
  REQUIRE(d2.has_value());
  CHECK((*d2)["text"] == json::array({"a", "b"}));
  CHECK_FALSE(run_detokenize(json{{"tokens", "x"}}, m).has_value());
  // An id the tokenizer does not know is a 400, not an empty text.
  CHECK_FALSE(run_detokenize(json{{"tokens", {static_cast<int64_t>(byte_tok().vocab_size())}}}, m).has_value());
  CHECK_FALSE(parse_tokenize(json{{"prompt", 5}}, m).has_value());
  ApiModel none = m;
  none.tokenizer = nullptr;
  CHECK_FALSE(parse_tokenize(json{{"prompt", "a"}}, none).has_value());
}

TEST_CASE("formatting: finish reasons, meta_info and logprob triples as SGLang writes them") {
  ItemSpec spec;
  spec.req.rid = "r";
  spec.req.input_ids = {1, 70, 71};
  spec.req.sampling.max_new_tokens = 4;
  spec.req.sampling.return_logprob = true;
  spec.req.sampling.top_logprobs_num = 1;
  spec.req.logprob_start_len = 0;
  ItemOutput out;
  out.ids = {100, 101};
  out.text = "ab";
  out.prompt_tokens = 3;
  out.completion_tokens = 2;
  out.cached_tokens = 1;
  out.logprobs = {{100, -0.5f, {{100, -0.5f}}}, {101, -0.25f, {{101, -0.25f}}}};
  out.input_logprobs = {{1, 0.0f, {}}, {70, -1.0f, {{70, -1.0f}}}, {71, -2.0f, {{71, -2.0f}}}};
  CHECK(finish_reason_json(spec, out).is_null());
  json meta = meta_info_json(spec, out, &byte_tok());
  CHECK(meta["id"] == "r");
  CHECK(meta["prompt_tokens"] == 3);
  CHECK(meta["completion_tokens"] == 2);
  CHECK(meta["cached_tokens"] == 1);
  CHECK_FALSE(meta.contains("e2e_latency"));
  CHECK(meta["output_token_logprobs"] == json::parse(R"([[-0.5, 100, "a"], [-0.25, 101, "b"]])"));
  CHECK(meta["input_token_logprobs"][0][0].is_null());  // the first prompt token has no logprob
  CHECK(meta["input_token_logprobs"][1] == json::parse(R"([-1.0, 70, "C"])"));
  CHECK(meta["input_top_logprobs"][0].is_null());
  CHECK(meta["output_top_logprobs"][1] == json::parse(R"([[-0.25, 101, "b"]])"));
  // Without return_text_in_logprobs the text is null.
  CHECK(meta_info_json(spec, out, nullptr)["output_token_logprobs"][0][2].is_null());

  out.finished = true;
  out.e2e_latency = 0.5;
  out.finish.type = engine::FinishInfo::Type::kLength;
  CHECK(finish_reason_json(spec, out) == json::parse(R"({"type": "length", "length": 4})"));
  CHECK(openai_finish_reason(out) == "length");
  CHECK(meta_info_json(spec, out, nullptr)["e2e_latency"] == 0.5);
  out.finish.type = engine::FinishInfo::Type::kStop;
  out.finish.matched = int32_t{2};
  CHECK(finish_reason_json(spec, out) == json::parse(R"({"type": "stop", "matched": 2})"));
  CHECK(matched_stop_json(out) == 2);
  out.finish.matched = std::string("\n\n");
  CHECK(finish_reason_json(spec, out) == json::parse(R"({"type": "stop", "matched": "\n\n"})"));
  out.finish.type = engine::FinishInfo::Type::kAbort;
  out.finish.message = "client gone";
  CHECK(finish_reason_json(spec, out) == json::parse(R"({"type": "abort", "message": "client gone"})"));
  CHECK(openai_finish_reason(out) == "abort");
  CHECK(matched_stop_json(out).is_null());

  json g = generate_object(spec, out, &byte_tok(), false);
  CHECK(g["text"] == "ab");
  CHECK(g["output_ids"] == json::array({100, 101}));
  CHECK_FALSE(generate_object(spec, out, nullptr, false).contains("text"));  // --skip-tokenizer-init
}

TEST_CASE("formatting: OpenAI logprobs, usage, error bodies") {
  std::vector<engine::TokenLogprobInfo> lp = {{100, -0.5f, {{100, -0.5f}, {101, -1.5f}}},
                                              {101, -0.25f, {{101, -0.25f}, {100, -2.0f}}}};
  json c = completion_logprobs(&byte_tok(), lp, 1, 2, 2);
  CHECK(c["tokens"] == json::array({"b"}));
  CHECK(c["token_logprobs"] == json::array({-0.25}));
  CHECK(c["text_offset"] == json::array({1}));  // byte offset in the choice's text
  CHECK(c["top_logprobs"][0] == json::parse(R"({"b": -0.25, "a": -2.0})"));
  CHECK(completion_logprobs(&byte_tok(), lp, 0, 2, 0)["top_logprobs"] == json::array());
  json ch = chat_logprobs(&byte_tok(), lp, 0, 2, 1);
  REQUIRE(ch["content"].size() == 2);
  CHECK(ch["content"][0]["token"] == "a");
  CHECK(ch["content"][0]["bytes"] == json::array({97}));
  CHECK(ch["content"][0]["logprob"] == -0.5);
  CHECK(ch["content"][0]["top_logprobs"].size() == 1);
  CHECK(ch["content"][0]["top_logprobs"][0] == json::parse(R"({"token": "a", "bytes": [97], "logprob": -0.5})"));

  // A token that ends mid-character still makes valid JSON.
  CHECK(json::parse(dump_json(json{{"t", std::string("\xe2\x82")}})).is_object());

  json e = json::parse(error_body(api_error(Status::not_found("The model 'x' does not exist"))));
  CHECK(e["error"]["code"] == "model_not_found");
  CHECK(e["error"]["param"] == "model");
  CHECK(e["error"]["type"] == "invalid_request_error");
  json q = json::parse(error_body(api_error(Status::resource_exhausted("queue full"))));
  CHECK(q["error"]["code"] == 429);
  CHECK(q["error"]["type"] == "rate_limit_error");
  CHECK(q["error"]["param"].is_null());
}

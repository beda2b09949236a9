// Chat templates: for each family, a system + user + assistant + user conversation renders to a
// hand-written prompt; templates are recognised from the real tokenizer_config.json files; a
// template that is not recognised is an error.
#include <doctest/doctest.h>

#include "engine/chat_template.h"
#include "test_tokenizer_util.h"

using namespace pdctl::engine;
using namespace tokenizer_test;

namespace {

const std::vector<ChatMessage> kConversation = {
    {"system", "You are a helpful assistant.", std::nullopt},
    {"user", "Hello!", std::nullopt},
    {"assistant", "Hi there. How can I help?", std::nullopt},
    {"user", "What is 2+2?", std::nullopt},
};

const ChatTokens kLlama3Tokens{"<|begin_of_text|>", "<|end_of_text|>"};
const ChatTokens kSpmTokens{"<s>", "</s>"};

// Meta's Llama-2-chat template (tokenizer_config.json of meta-llama/Llama-2-7b-chat-hf).
const char* const kLlama2Jinja =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
    "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif "
    "%}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
    "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if "
    "loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
    "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if "
    "message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] "
    "== 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

std::string config_template(const std::string& name) {
  return read_json(shared_path("tokenizers/" + name + "/tokenizer_config.json"))["chat_template"];
}

}  // namespace

TEST_CASE("chat template: llama-3 from the real tokenizer_config.json") {
  if (!have("tokenizers/llama3/tokenizer_config.json")) {
    MESSAGE("skipped: llama3/tokenizer_config.json is absent");
    return;
  }
  auto t = ChatTemplate::detect(config_template("llama3"), kLlama3Tokens);
  REQUIRE_MESSAGE(t.has_value(), t.status().to_string());
  CHECK(t->name() == "llama-3");
  CHECK(t->end_of_turn() == "<|eot_id|>");
  auto r = t->render(kConversation, ChatOptions{});
  REQUIRE(r.has_value());
  CHECK(r->text ==
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHi there. How can I help?<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n");
  CHECK(r->has_bos);
  // This (early) template writes the assistant header even without add_generation_prompt,
  // and trims every message.
  ChatOptions no_gen;
  no_gen.add_generation_prompt = false;
  const std::vector<ChatMessage> padded = {{"user", "  hi \n", std::nullopt}};
  CHECK(t->render(padded, no_gen)->text ==
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n");
  // The built-in llama-3 follows add_generation_prompt.
  auto named = ChatTemplate::named("llama-3", kLlama3Tokens);
  REQUIRE(named.has_value());
  CHECK(named->render(padded, no_gen)->text == "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>");
}

TEST_CASE("chat template: chatml (qwen3) from the real tokenizer_config.json, with <think> handling") {
  if (!have("tokenizers/qwen3/tokenizer_config.json")) {
    MESSAGE("skipped: qwen3/tokenizer_config.json is absent");
    return;
  }
  auto t = ChatTemplate::detect(config_template("qwen3"), ChatTokens{"", "<|im_end|>"});
  REQUIRE_MESSAGE(t.has_value(), t.status().to_string());
  CHECK(t->name() == "qwen3");
  CHECK(t->end_of_turn() == "<|im_end|>");
  auto r = t->render(kConversation, ChatOptions{});
  REQUIRE(r.has_value());
  CHECK(r->text ==
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHello!<|im_end|>\n"
        "<|im_start|>assistant\nHi there. How can I help?<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n");
  CHECK_FALSE(r->has_bos);

  // An earlier assistant turn loses its thinking; enable_thinking=false pre-fills an empty one.
  std::vector<ChatMessage> thought = {{"user", "Hi", std::nullopt},
                                      {"assistant", "<think>\nGreet back.\n</think>\n\nHello!", std::nullopt},
                                      {"user", "Bye", std::nullopt}};
  ChatOptions no_think;
  no_think.enable_thinking = false;
  CHECK(t->render(thought, no_think)->text ==
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
        "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
  // The last assistant turn (after the last user message) keeps it, from reasoning_content.
  std::vector<ChatMessage> last = {{"user", "Hi", std::nullopt}, {"assistant", "Hello!", "Greet back."}};
  ChatOptions no_gen;
  no_gen.add_generation_prompt = false;
  CHECK(t->render(last, no_gen)->text ==
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\nGreet back.\n</think>\n\nHello!<|im_end|>\n");
}

TEST_CASE("chat template: llama-2 (Meta's template and --chat-template llama-2)") {
  const std::string expected =
      "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHello! [/INST] Hi there. How can I help? </s>"
      "<s>[INST] What is 2+2? [/INST]";
  auto detected = ChatTemplate::detect(kLlama2Jinja, kSpmTokens);
  REQUIRE_MESSAGE(detected.has_value(), detected.status().to_string());
  CHECK(detected->name() == "llama-2");
  auto named = ChatTemplate::named("llama-2", kSpmTokens);
  REQUIRE(named.has_value());
  for (const ChatTemplate* t : {&*detected, &*named}) {
    auto r = t->render(kConversation, ChatOptions{});
    REQUIRE(r.has_value());
    CHECK(r->text == expected);
    CHECK(r->has_bos);
    CHECK(t->end_of_turn() == "</s>");
  }
  // Roles must alternate, as the template's raise_exception says.
  const std::vector<ChatMessage> twice = {{"user", "a", std::nullopt}, {"user", "b", std::nullopt}};
  auto bad = named->render(twice, ChatOptions{});
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.status().code() == pdctl::Errc::kInvalidArgument);
  CHECK(bad.status().message().find("alternate") != std::string::npos);
}

TEST_CASE("chat template: mistral variants") {
  auto t = ChatTemplate::named("mistral", kSpmTokens);
  REQUIRE(t.has_value());
  CHECK(t->render(kConversation, ChatOptions{})->text ==
        "<s> [INST] You are a helpful assistant.\n\nHello! [/INST] Hi there. How can I help?</s> [INST] What is 2+2? [/INST]");
  auto v1 = ChatTemplate::named("mistral-v1", kSpmTokens);
  REQUIRE(v1.has_value());
  const std::vector<ChatMessage> no_system(kConversation.begin() + 1, kConversation.end());
  CHECK(v1->render(no_system, ChatOptions{})->text ==
        "<s>[INST] Hello! [/INST]Hi there. How can I help?</s>[INST] What is 2+2? [/INST]");
  // The v1 template has no system role: the request is refused, not silently changed.
  CHECK_FALSE(v1->render(kConversation, ChatOptions{}).has_value());
}

TEST_CASE("chat template: chatml with a default system prompt (Qwen2.5 style), llama-3.1 dates") {
  const std::string qwen25 =
      "{%- if messages[0]['role'] == 'system' %}\n    {{- '<|im_start|>system\\n' + messages[0]['content'] + "
      "'<|im_end|>\\n' }}\n{%- else %}\n    {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You "
      "are a helpful assistant.<|im_end|>\\n' }}\n{%- endif %}\n{%- for message in messages %}\n    {%- if "
      "(message.role == \"user\") or (message.role == \"system\" and not loop.first) or (message.role == "
      "\"assistant\") %}\n        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + "
      "'\\n' }}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- "
      "'<|im_start|>assistant\\n' }}\n{%- endif %}\n";
  auto t = ChatTemplate::detect(qwen25, ChatTokens{"", "<|im_end|>"});
  REQUIRE_MESSAGE(t.has_value(), t.status().to_string());
  CHECK(t->name() == "chatml");
  const std::vector<ChatMessage> user = {{"user", "Hi", std::nullopt}};
  CHECK(t->render(user, ChatOptions{})->text ==
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");

  auto l31 = ChatTemplate::named("llama-3.1", kLlama3Tokens);
  REQUIRE(l31.has_value());
  ChatOptions dated;
  dated.date_string = "03 Mar 2025";
  CHECK(l31->render(user, dated)->text ==
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
        "Today Date: 03 Mar 2025\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n");
  CHECK(l31->render(user, ChatOptions{})->text.find("Today Date: 26 Jul 2024\n\n") != std::string::npos);
}

TEST_CASE("chat template: what is not recognised is an error, never a guess") {
  // Gemma's template: none of the three families.
  auto gemma = ChatTemplate::detect(
      "{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + message['role'] + '\\n' + "
      "message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}",
      kSpmTokens);
  REQUIRE_FALSE(gemma.has_value());
  CHECK(gemma.status().code() == pdctl::Errc::kInvalidArgument);
  CHECK(gemma.status().message().find("--chat-template") != std::string::npos);
  // Llama-3 markers but another layout (the role written after the content).
  auto odd = ChatTemplate::detect(
      "{% for message in messages %}{{ message['content'] + '<|start_header_id|>' + message['role'] + "
      "'<|end_header_id|><|eot_id|>' }}{% endfor %}",
      kLlama3Tokens);
  REQUIRE_FALSE(odd.has_value());
  CHECK(odd.status().message().find("llama-3") != std::string::npos);
  auto inst = ChatTemplate::detect("{% for m in messages %}[INST]{{ m.content }}[/INST]{% endfor %}", kSpmTokens);
  CHECK_FALSE(inst.has_value());
  auto unknown = ChatTemplate::named("vicuna", kSpmTokens);
  REQUIRE_FALSE(unknown.has_value());
  CHECK(unknown.status().message().find("llama-3, llama-3.1, chatml") != std::string::npos);
  // Roles other than system/user/assistant are refused by name.
  auto t = ChatTemplate::named("chatml", kSpmTokens);
  const std::vector<ChatMessage> tool = {{"tool", "42", std::nullopt}};
  auto r = t->render(tool, ChatOptions{});
  REQUIRE_FALSE(r.has_value());
  CHECK(r.status().message().find("tool") != std::string::npos);
  CHECK_FALSE(t->render({}, ChatOptions{}).has_value());
}

TEST_CASE("chat template: OpenAI messages with string content and text parts") {
  const auto j = nlohmann::json::parse(R"([
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "there"}]},
    {"role": "assistant", "content": null},
    {"role": "assistant", "content": "Hi", "reasoning_content": "greet"}])");
  auto m = parse_openai_messages(j);
  REQUIRE_MESSAGE(m.has_value(), m.status().to_string());
  REQUIRE(m->size() == 4);
  CHECK((*m)[1].content == "Hello\nthere");
  CHECK((*m)[2].content.empty());
  CHECK((*m)[3].reasoning_content == "greet");
  auto error_of = [](const char* text) {
    auto r = parse_openai_messages(nlohmann::json::parse(text));
    REQUIRE_FALSE(r.has_value());
    CHECK(r.status().code() == pdctl::Errc::kInvalidArgument);
    return r.status().message();
  };
  CHECK(error_of(R"({"role": "user"})").find("array") != std::string::npos);
  CHECK(error_of(R"([{"content": "x"}])").find("messages[0].role") != std::string::npos);
  CHECK(error_of(R"([{"role": "tool", "content": "x"}])").find("tool") != std::string::npos);
  CHECK(error_of(R"([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}])").find("image_url") !=
        std::string::npos);
  CHECK(error_of(R"([{"role": "user"}])").find("messages[0].content") != std::string::npos);
  CHECK(error_of(R"([{"role": "user", "content": 5}])").find("messages[0].content") != std::string::npos);
}

TEST_CASE("chat template: through the Tokenizer, BOS comes from the template only") {
  const Tokenizer* tok = shared_tokenizer("llama3");
  if (tok == nullptr) return;
  auto r = tok->render_chat(kConversation, ChatOptions{});
  REQUIRE(r.has_value());
  REQUIRE(r->has_bos);
  // Encoded without special tokens, as transformers' apply_chat_template does: one BOS.
  const auto ids = tok->encode(r->text, !r->has_bos);
  CHECK(ids.at(0) == 128000);
  CHECK(std::count(ids.begin(), ids.end(), 128000) == 1);
  CHECK(tok->decode(ids, false) == r->text);
  // --chat-template replaces the detected template.
  Tokenizer copy = *tok;
  CHECK(copy.set_chat_template("chatml").is_ok());
  CHECK(copy.chat_template_name() == "chatml");
  CHECK(copy.render_chat(kConversation, ChatOptions{})->text.starts_with("<|im_start|>system\n"));
  CHECK_FALSE(copy.is_eos(128009));  // <|eot_id|> no longer ends a turn
  CHECK(tok->is_eos(128009));        // the original is unchanged
  CHECK_FALSE(copy.set_chat_template("nope").is_ok());
}

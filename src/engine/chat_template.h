#pragma once
// Chat templates: OpenAI-style messages to the prompt text a model was trained on.
//
// Debian 12 packages no Jinja engine for C++, so the families in use are recognised from the
// model's Jinja source (tokenizer_config.json's chat_template, or GGUF's
// tokenizer.chat_template) and rendered here, exactly as the Jinja would for system, user and
// assistant messages:
//   llama-3  <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> (3.0, and 3.1+ with the
//            "Cutting Knowledge Date" system header)
//   chatml   <|im_start|>role\n...<|im_end|>\n (Qwen2/2.5 with a default system prompt, and
//            qwen3 with its <think> handling of assistant turns)
//   llama-2  [INST] with <<SYS>> in the first turn; mistral: the [INST] variants without it
// A template whose text matches none of the known shapes is an error, never a guess.
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/status.h"

namespace pdctl::engine {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
  std::optional<std::string> reasoning_content;  // an assistant's thinking (qwen3)
};

struct ChatOptions {
  bool add_generation_prompt = true;
  // qwen3: false appends an empty <think></think> block after the generation prompt.
  std::optional<bool> enable_thinking;
  // llama-3.1+: the "Today Date" of the system header; empty means what the template does
  // (its fixed date, or today's where it calls strftime_now).
  std::string date_string;
};

struct RenderedPrompt {
  std::string text;
  // The text already begins with the BOS token (Llama-3, Llama-2 and Mistral templates emit
  // it): encode it with add_special_tokens = false so that BOS is not doubled. Transformers'
  // apply_chat_template always encodes without special tokens; doing so is always right.
  bool has_bos = false;
};

// The texts of the special tokens a template uses.
struct ChatTokens {
  std::string bos;
  std::string eos;
};

class ChatTemplate {
 public:
  // Recognises a Jinja template; an error names what was not recognised.
  static Result<ChatTemplate> detect(std::string_view jinja, ChatTokens tokens);
  // A built-in template by name (--chat-template): see names().
  static Result<ChatTemplate> named(std::string_view name, ChatTokens tokens);
  static std::vector<std::string_view> names();

  Result<RenderedPrompt> render(std::span<const ChatMessage> messages, const ChatOptions& options) const;

  // The name of the recognised variant ("llama-3", "llama-3.1", "chatml", "qwen3", "llama-2",
  // "mistral", "mistral-v1").
  const std::string& name() const { return name_; }
  // The text of the token that ends an assistant turn ("<|eot_id|>", "<|im_end|>", EOS).
  const std::string& end_of_turn() const { return end_of_turn_; }

  enum class Family { kLlama3, kChatML, kInst };

 private:
  struct Style {
    Family family = Family::kChatML;
    // llama-3
    bool bos = true;                 // the template emits BOS before the first message
    bool trim = true;                // message contents are trimmed
    bool always_generation = false;  // the assistant header is emitted even without the flag
    bool knowledge_header = false;   // 3.1+: system header with knowledge and today's dates
    bool system_turn_optional = false;  // 3.1+ variants without a system turn when none is given
    bool date_today = false;            // strftime_now("%d %b %Y")
    std::string fixed_date = "26 Jul 2024";
    // chatml
    std::string default_system;  // emitted when the conversation has no system message
    bool qwen3 = false;
    // [INST]
    enum class Inst { kLlama2, kMistral, kMistralV1 } inst = Inst::kLlama2;
  };
  Result<RenderedPrompt> render_llama3(std::span<const ChatMessage> m, const ChatOptions& o) const;
  Result<RenderedPrompt> render_chatml(std::span<const ChatMessage> m, const ChatOptions& o) const;
  Result<RenderedPrompt> render_inst(std::span<const ChatMessage> m, const ChatOptions& o) const;

  std::string name_;
  std::string end_of_turn_;
  Style style_;
  ChatTokens tokens_;
};

// OpenAI `messages` (a JSON array) to ChatMessages. Content is a string, null (an assistant
// message without text) or a list of {"type": "text", "text": ...} parts, joined with "\n";
// other part types and roles other than system, user and assistant are errors.
Result<std::vector<ChatMessage>> parse_openai_messages(const nlohmann::json& messages);

}  // namespace pdctl::engine

#include "engine/chat_template.h"

#include <algorithm>
#include <ctime>

#include <nlohmann/json.hpp>

namespace pdctl::engine {
namespace {

// The template's text with whitespace and Jinja's trim markers removed outside string
// literals, every literal quoted with ', real newlines in literals written as \n, and
// `message.x` written as message['x']: one spelling for the many ways a template is laid out.
std::string compact(std::string_view t) {
  std::string out;
  out.reserve(t.size());
  char quote = 0;
  for (size_t i = 0; i < t.size(); ++i) {
    const char c = t[i];
    if (quote != 0) {
      if (c == '\\' && i + 1 < t.size()) {
        out.push_back(c);
        out.push_back(t[++i]);
      } else if (c == quote) {
        out.push_back('\'');
        quote = 0;
      } else if (c == '\n') {
        out.append("\\n");
      } else if (c == '\'') {
        out.append("\\'");
      } else {
        out.push_back(c);
      }
      continue;
    }
    if (c == '\'' || c == '"') {
      quote = c;
      out.push_back('\'');
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
    out.push_back(c);
  }
  auto replace_all = [&](std::string_view from, std::string_view to) {
    std::string r;
    size_t prev = 0;
    for (size_t pos = out.find(from); pos != std::string::npos; pos = out.find(from, prev)) {
      r.append(out, prev, pos - prev);
      r.append(to);
      prev = pos + from.size();
    }
    r.append(out, prev, std::string::npos);
    out = std::move(r);
  };
  replace_all("{%-", "{%");
  replace_all("-%}", "%}");
  replace_all("{{-", "{{");
  replace_all("-}}", "}}");
  replace_all("message.role", "message['role']");
  replace_all("message.content", "message['content']");
  replace_all("messages[0].role", "messages[0]['role']");
  replace_all("messages[0].content", "messages[0]['content']");
  return out;
}

bool has(std::string_view text, std::string_view snippet) { return text.find(snippet) != std::string_view::npos; }

// The rest of the first string literal that starts with `prefix` (which includes the opening
// quote) and contains `needle`; empty when there is none.
std::string literal_after(std::string_view c, std::string_view prefix, std::string_view needle = {}) {
  for (size_t pos = c.find(prefix); pos != std::string_view::npos; pos = c.find(prefix, pos + 1)) {
    const size_t b = pos + prefix.size();
    size_t e = b;
    while (e < c.size() && c[e] != '\'') e += c[e] == '\\' ? 2 : 1;
    const std::string_view lit = c.substr(b, std::min(e, c.size()) - b);
    if (lit.find(needle) != std::string_view::npos) return std::string(lit);
  }
  return {};
}

// Jinja string escapes in a literal taken from the template.
std::string unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      const char n = s[++i];
      out.push_back(n == 'n' ? '\n' : n == 't' ? '\t' : n);
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// Python's str.isspace for the characters that matter here (ASCII, NBSP and friends).
bool py_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1C && c <= 0x1F); }

// Jinja's |trim and Python's str.strip(): ASCII and Unicode whitespace.
std::string strip(std::string_view s) {
  auto is_space_at = [&](size_t i, size_t& len) {
    const auto c = static_cast<unsigned char>(s[i]);
    len = 1;
    if (c < 0x80) return py_space(c);
    // Multi-byte White_Space characters: U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028,
    // U+2029, U+202F, U+205F, U+3000.
    if (c == 0xC2 && i + 1 < s.size()) {
      const auto d = static_cast<unsigned char>(s[i + 1]);
      len = 2;
      return d == 0x85 || d == 0xA0;
    }
    if (i + 2 < s.size()) {
      const auto d = static_cast<unsigned char>(s[i + 1]), e = static_cast<unsigned char>(s[i + 2]);
      len = 3;
      if (c == 0xE1 && d == 0x9A && e == 0x80) return true;
      if (c == 0xE2 && d == 0x80 && ((e >= 0x80 && e <= 0x8A) || e == 0xA8 || e == 0xA9 || e == 0xAF)) return true;
      if (c == 0xE2 && d == 0x81 && e == 0x9F) return true;
      if (c == 0xE3 && d == 0x80 && e == 0x80) return true;
    }
    return false;
  };
  size_t b = 0, len = 0;
  while (b < s.size() && is_space_at(b, len)) b += len;
  size_t e = b, i = b;
  while (i < s.size()) {
    const bool sp = is_space_at(i, len);
    i += len;
    if (!sp) e = i;
  }
  return std::string(s.substr(b, e - b));
}

std::string strip_char(std::string_view s, char c, bool left, bool right) {
  size_t b = 0, e = s.size();
  if (left)
    while (b < e && s[b] == c) ++b;
  if (right)
    while (e > b && s[e - 1] == c) --e;
  return std::string(s.substr(b, e - b));
}

std::string today() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%d %b %Y", &tm);
  return buf;
}

Status not_recognised(std::string_view family, std::string_view what) {
  return Status::invalid_argument("chat template not recognised: it looks like the " + std::string(family) +
                                  " family but " + std::string(what) +
                                  "; name one with --chat-template (llama-3, llama-3.1, chatml, qwen3, "
                                  "llama-2, mistral, mistral-v1)");
}

constexpr std::string_view kL3Message =
    "'<|start_header_id|>'+message['role']+'<|end_header_id|>\\n\\n'+message['content']";
constexpr std::string_view kL3Assistant = "'<|start_header_id|>assistant<|end_header_id|>\\n\\n'";
constexpr std::string_view kChatMLMessage = "'<|im_start|>'+message['role']+'\\n'+message['content']+'<|im_end|>'";
constexpr std::string_view kChatMLAssistant = "'<|im_start|>assistant\\n'";

}  // namespace

std::vector<std::string_view> ChatTemplate::names() {
  return {"llama-3", "llama-3.1", "chatml", "qwen3", "llama-2", "mistral", "mistral-v1"};
}

Result<ChatTemplate> ChatTemplate::named(std::string_view name, ChatTokens tokens) {
  ChatTemplate t;
  t.tokens_ = std::move(tokens);
  t.name_ = std::string(name);
  Style& s = t.style_;
  if (name == "llama-3" || name == "llama-3.1") {
    s.family = Family::kLlama3;
    s.knowledge_header = name == "llama-3.1";
    t.end_of_turn_ = "<|eot_id|>";
  } else if (name == "chatml" || name == "qwen3") {
    s.family = Family::kChatML;
    s.qwen3 = name == "qwen3";
    t.end_of_turn_ = "<|im_end|>";
  } else if (name == "llama-2" || name == "mistral" || name == "mistral-v1") {
    s.family = Family::kInst;
    s.inst = name == "llama-2" ? Style::Inst::kLlama2 : name == "mistral" ? Style::Inst::kMistral : Style::Inst::kMistralV1;
    t.end_of_turn_ = t.tokens_.eos;
  } else {
    std::string list;
    for (auto n : names()) list += (list.empty() ? "" : ", ") + std::string(n);
    return Status::invalid_argument("unknown chat template '" + std::string(name) + "' (known: " + list + ")");
  }
  return t;
}

Result<ChatTemplate> ChatTemplate::detect(std::string_view jinja, ChatTokens tokens) {
  const std::string c = compact(jinja);
  if (has(c, "<|start_header_id|>")) {
    PDCTL_ASSIGN_OR_RETURN(ChatTemplate t, named("llama-3", std::move(tokens)));
    Style& s = t.style_;
    if (!has(c, kL3Message)) return not_recognised("llama-3", "its message layout is not the known one");
    if (!has(c, kL3Assistant)) return not_recognised("llama-3", "it has no assistant header");
    s.trim = has(c, std::string(kL3Message) + "|trim");
    s.bos = has(c, "bos_token");
    s.always_generation = !has(c, "add_generation_prompt");
    if (has(c, "Cutting Knowledge Date")) {
      if (!has(c, "'Cutting Knowledge Date: December 2023\\n'") ||
          !has(c, "'Today Date: '+date_string+'\\n\\n'") ||
          !has(c, "setsystem_message=messages[0]['content']|trim") || !has(c, "setsystem_message=''")) {
        return not_recognised("llama-3.1", "its system header is not the known one");
      }
      t.name_ = "llama-3.1";
      s.knowledge_header = true;
      // Some variants write the system turn only when there is a system message.
      s.system_turn_optional = has(c, "{%ifsystem_message%}");
      s.date_today = has(c, "strftime_now");
      if (std::string d = literal_after(c, "setdate_string='"); !d.empty()) s.fixed_date = unescape(d);
    }
    return t;
  }
  if (has(c, "<|im_start|>")) {
    PDCTL_ASSIGN_OR_RETURN(ChatTemplate t, named("chatml", std::move(tokens)));
    Style& s = t.style_;
    if (!has(c, kChatMLMessage)) return not_recognised("chatml", "its message layout is not the known one");
    if (!has(c, kChatMLAssistant)) return not_recognised("chatml", "it has no assistant header");
    s.always_generation = !has(c, "add_generation_prompt");
    // Qwen2/2.5 write a default system turn when the conversation has none.
    s.default_system = unescape(literal_after(c, "'<|im_start|>system\\n", "<|im_end|>"));
    s.default_system.resize(std::min(s.default_system.size(), s.default_system.find("<|im_end|>")));
    if (has(c, "reasoning_content") || has(c, "</think>")) {
      if (!has(c, "'\\n<think>\\n'+reasoning_content.strip('\\n')+'\\n</think>\\n\\n'+content.lstrip('\\n')") ||
          !has(c, "ns.last_query_index")) {
        return not_recognised("qwen3", "its handling of <think> is not the known one");
      }
      t.name_ = "qwen3";
      s.qwen3 = true;
    }
    return t;
  }
  if (has(c, "[INST]")) {
    if (has(c, "<<SYS>>")) {
      if (has(c, "'<<SYS>>\\n'+system_message+'\\n<</SYS>>\\n\\n'+message['content']") &&
          has(c, "bos_token+'[INST] '+content.strip()+' [/INST]'") &&
          has(c, "' '+content.strip()+' '+eos_token")) {
        return named("llama-2", std::move(tokens));
      }
      return not_recognised("llama-2", "its layout is not Llama-2-chat's");
    }
    if (has(c, "'[INST] '+system_message+'\\n\\n'+message['content']+' [/INST]'") ||
        has(c, "' [INST] '+system_message+'\\n\\n'+message['content']+' [/INST]'")) {
      if (has(c, "{{bos_token}}") && has(c, "' [INST] '+message['content']+' [/INST]'") &&
          has(c, "' '+message['content']+eos_token") && !has(c, "add_generation_prompt")) {
        return named("mistral", std::move(tokens));
      }
      return not_recognised("mistral", "its layout is not one of the known Mistral templates");
    }
    if (has(c, "{{bos_token}}") && has(c, "'[INST] '+message['content']+' [/INST]'") &&
        has(c, "message['content']+eos_token") && !has(c, "system")) {
      return named("mistral-v1", std::move(tokens));
    }
    return not_recognised("[INST]", "its layout is not one of the known Llama-2 or Mistral templates");
  }
  return Status::invalid_argument(
      "chat template not recognised: it belongs to none of the llama-3 (<|start_header_id|>), "
      "chatml (<|im_start|>) and [INST] (llama-2, mistral) families; name one with --chat-template");
}

Result<RenderedPrompt> ChatTemplate::render(std::span<const ChatMessage> messages, const ChatOptions& options) const {
  if (messages.empty()) return Status::invalid_argument("messages is empty");
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& r = messages[i].role;
    if (r != "system" && r != "user" && r != "assistant") {
      return Status::invalid_argument("messages[" + std::to_string(i) + "]: role '" + r +
                                      "' is not supported by the " + name_ + " chat template");
    }
  }
  Result<RenderedPrompt> out = Status::internal("unreachable");
  switch (style_.family) {
    case Family::kLlama3: out = render_llama3(messages, options); break;
    case Family::kChatML: out = render_chatml(messages, options); break;
    case Family::kInst: out = render_inst(messages, options); break;
  }
  if (out.has_value()) {
    out->has_bos = !tokens_.bos.empty() && out->text.compare(0, tokens_.bos.size(), tokens_.bos) == 0;
  }
  return out;
}

Result<RenderedPrompt> ChatTemplate::render_llama3(std::span<const ChatMessage> m, const ChatOptions& o) const {
  const Style& s = style_;
  RenderedPrompt p;
  auto content = [&](const ChatMessage& msg) { return s.trim ? strip(msg.content) : msg.content; };
  auto turn = [&](std::string_view role, std::string_view text) {
    p.text.append("<|start_header_id|>").append(role).append("<|end_header_id|>\n\n").append(text).append("<|eot_id|>");
  };
  size_t first = 0;
  if (s.knowledge_header) {
    // 3.1+: BOS, then a system turn that carries the dates.
    if (s.bos) p.text += tokens_.bos;
    std::string system;
    if (m[0].role == "system") {
      system = strip(m[0].content);
      first = 1;
    }
    if (!system.empty() || !s.system_turn_optional) {
      const std::string date = !o.date_string.empty() ? o.date_string : s.date_today ? today() : s.fixed_date;
      turn("system", "Cutting Knowledge Date: December 2023\nToday Date: " + date + "\n\n" + system);
    }
  }
  for (size_t i = first; i < m.size(); ++i) {
    if (i == 0 && s.bos && !s.knowledge_header) p.text += tokens_.bos;
    turn(m[i].role, content(m[i]));
  }
  if (o.add_generation_prompt || s.always_generation) p.text.append("<|start_header_id|>assistant<|end_header_id|>\n\n");
  return p;
}

Result<RenderedPrompt> ChatTemplate::render_chatml(std::span<const ChatMessage> m, const ChatOptions& o) const {
  const Style& s = style_;
  RenderedPrompt p;
  auto turn = [&](std::string_view role, std::string_view text) {
    p.text.append("<|im_start|>").append(role).append("\n").append(text).append("<|im_end|>\n");
  };
  size_t first = 0;
  if (m[0].role == "system") {
    turn("system", m[0].content);
    first = 1;
  } else if (!s.default_system.empty()) {
    turn("system", s.default_system);
  }
  // qwen3: assistant turns after the last user query keep their thinking.
  size_t last_query = m.size() - 1;
  if (s.qwen3) {
    for (size_t k = m.size(); k-- > 0;) {
      const auto& c = m[k].content;
      const bool tool_response = c.starts_with("<tool_response>") && c.ends_with("</tool_response>");
      if (m[k].role == "user" && !tool_response) {
        last_query = k;
        break;
      }
    }
  }
  for (size_t i = first; i < m.size(); ++i) {
    const ChatMessage& msg = m[i];
    if (msg.role != "assistant" || !s.qwen3) {
      turn(msg.role, msg.content);
      continue;
    }
    std::string content = msg.content, reasoning;
    if (msg.reasoning_content) {
      reasoning = *msg.reasoning_content;
    } else if (const size_t close = msg.content.rfind("</think>"); close != std::string::npos) {
      content = strip_char(std::string_view(msg.content).substr(close + 8), '\n', true, false);
      std::string before = strip_char(std::string_view(msg.content).substr(0, msg.content.find("</think>")), '\n', false, true);
      const size_t open = before.rfind("<think>");
      reasoning = strip_char(open == std::string::npos ? before : before.substr(open + 7), '\n', true, false);
    }
    p.text.append("<|im_start|>assistant\n");
    if (i > last_query && (i + 1 == m.size() || !reasoning.empty())) {
      p.text.append("<think>\n").append(strip_char(reasoning, '\n', true, true)).append("\n</think>\n\n");
      p.text.append(strip_char(content, '\n', true, false));
    } else {
      p.text.append(content);
    }
    p.text.append("<|im_end|>\n");
  }
  if (o.add_generation_prompt || s.always_generation) {
    p.text.append("<|im_start|>assistant\n");
    if (s.qwen3 && o.enable_thinking.has_value() && !*o.enable_thinking) p.text.append("<think>\n\n</think>\n\n");
  }
  return p;
}

Result<RenderedPrompt> ChatTemplate::render_inst(std::span<const ChatMessage> m, const ChatOptions&) const {
  using Inst = Style::Inst;
  const Inst kind = style_.inst;
  RenderedPrompt p;
  std::optional<std::string> system;
  size_t first = 0;
  if (kind != Inst::kMistralV1 && m[0].role == "system") {
    system = m[0].content;
    first = 1;
  }
  if (kind != Inst::kLlama2) p.text += tokens_.bos;
  for (size_t i = first; i < m.size(); ++i) {
    const size_t k = i - first;
    const ChatMessage& msg = m[i];
    if ((msg.role == "user") != (k % 2 == 0)) {
      return Status::invalid_argument(kind == Inst::kMistral
                                          ? "After the optional system message, conversation roles must alternate "
                                            "user/assistant/user/assistant/..."
                                          : "Conversation roles must alternate user/assistant/user/assistant/...");
    }
    switch (kind) {
      case Inst::kLlama2: {
        std::string content = msg.content;
        if (k == 0 && system) content = "<<SYS>>\n" + *system + "\n<</SYS>>\n\n" + msg.content;
        if (msg.role == "user") {
          p.text += tokens_.bos + "[INST] " + strip(content) + " [/INST]";
        } else if (msg.role == "assistant") {
          p.text += " " + strip(content) + " " + tokens_.eos;
        }
        break;
      }
      case Inst::kMistral:
        if (msg.role == "user") {
          p.text += k == 0 && system ? " [INST] " + *system + "\n\n" + msg.content + " [/INST]"
                                     : " [INST] " + msg.content + " [/INST]";
        } else if (msg.role == "assistant") {
          p.text += " " + msg.content + tokens_.eos;
        } else {
          return Status::invalid_argument(
              "Only user and assistant roles are supported, with the exception of an initial optional system message!");
        }
        break;
      case Inst::kMistralV1:
        if (msg.role == "user") {
          p.text += "[INST] " + msg.content + " [/INST]";
        } else if (msg.role == "assistant") {
          p.text += msg.content + tokens_.eos;
        } else {
          return Status::invalid_argument("Only user and assistant roles are supported!");
        }
        break;
    }
  }
  return p;
}

Result<std::vector<ChatMessage>> parse_openai_messages(const nlohmann::json& messages) {
  if (!messages.is_array()) return Status::invalid_argument("messages must be an array");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return Status::invalid_argument(where + " is not an object");
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) return Status::invalid_argument(where + ".role is missing");
    ChatMessage msg;
    msg.role = role->get<std::string>();
    if (msg.role != "system" && msg.role != "user" && msg.role != "assistant") {
      return Status::invalid_argument(where + ".role '" + msg.role + "' is not supported (system, user, assistant)");
    }
    if (auto tc = m.find("tool_calls"); tc != m.end() && !tc->is_null()) {
      return Status::invalid_argument(where + ": tool_calls are not supported");
    }
    auto content = m.find("content");
    if (content == m.end() || content->is_null()) {
      if (msg.role != "assistant") return Status::invalid_argument(where + ".content is missing");
    } else if (content->is_string()) {
      msg.content = content->get<std::string>();
    } else if (content->is_array()) {
      for (size_t k = 0; k < content->size(); ++k) {
        const auto& part = (*content)[k];
        const std::string pw = where + ".content[" + std::to_string(k) + "]";
        auto type = part.is_object() ? part.find("type") : part.end();
        if (!part.is_object() || type == part.end() || !type->is_string()) {
          return Status::invalid_argument(pw + ".type is missing");
        }
        if (*type != "text") {
          return Status::invalid_argument(pw + ": content part type '" + type->get<std::string>() + "' is not supported");
        }
        auto text = part.find("text");
        if (text == part.end() || !text->is_string()) return Status::invalid_argument(pw + ".text is missing");
        if (k > 0) msg.content += "\n";
        msg.content += text->get<std::string>();
      }
    } else {
      return Status::invalid_argument(where + ".content must be a string or a list of parts");
    }
    if (auto rc = m.find("reasoning_content"); rc != m.end() && rc->is_string()) {
      msg.reasoning_content = rc->get<std::string>();
    }
    out.push_back(std::move(msg));
  }
  return out;
}

}  // namespace pdctl::engine

#include "engine/tokenizer.h"

#include <algorithm>
#include <filesystem>

#include "engine/gguf.h"
#include "engine/tokenizer_impl.h"
#include "engine/unicode_text.h"

namespace pdctl::engine {
namespace tok {

void TokenizerImpl::encode_text(std::string_view text, std::vector<int32_t>& out) const {
  std::vector<Segment> raw, norm;
  std::vector<PreToken> pieces;
  if (match_added_tokens) {
    added.split(text, /*normalized_pass=*/false, raw);
  } else {
    raw.push_back({0, text.size(), -1});
  }
  std::string s;
  for (const Segment& seg : raw) {
    if (seg.id >= 0) {
      out.push_back(seg.id);
      continue;
    }
    if (seg.end == seg.begin) continue;
    s.assign(text.substr(seg.begin, seg.end - seg.begin));
    if (normalizer) normalizer->normalize(s);
    if (match_added_tokens) {
      added.split(s, /*normalized_pass=*/true, norm);
    } else {
      norm.assign(1, Segment{0, s.size(), -1});
    }
    for (const Segment& sub : norm) {
      if (sub.id >= 0) {
        out.push_back(sub.id);
        continue;
      }
      if (sub.end == sub.begin) continue;
      pieces.clear();
      pieces.push_back(PreToken{s.substr(sub.begin, sub.end - sub.begin), seg.begin == 0 && sub.begin == 0});
      if (pre_tokenizer) pre_tokenizer->pre_tokenize(pieces);
      for (const PreToken& p : pieces) model->tokenize(p.text, out);
    }
  }
}

std::optional<std::string_view> TokenizerImpl::token_string(int32_t id) const {
  if (added.find(id) != nullptr) return added.decode_text(id);
  return model->id_to_token(id);
}

std::string TokenizerImpl::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (const AddedToken* t = added.find(id)) {
      if (!(skip_special && t->special)) tokens.emplace_back(added.decode_text(id));
      continue;
    }
    if (auto s = model->id_to_token(id)) tokens.emplace_back(*s);
  }
  std::string out;
  if (!decoder) {
    // Hugging Face joins the tokens with spaces when there is no decoder.
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) out += ' ';
      out += tokens[i];
    }
    return unicode::utf8_lossy(out);
  }
  decoder->decode_chain(tokens);
  for (const auto& t : tokens) out += t;
  return out;
}

size_t TokenizerImpl::vocab_size() const {
  size_t n = model->vocab_size();
  for (const auto& t : added.tokens()) n = std::max(n, static_cast<size_t>(t.id) + 1);
  return n;
}

std::shared_ptr<TokenizerImpl> make_byte_level() {
  auto impl = std::make_shared<TokenizerImpl>();
  impl->source = "byte-level";
  impl->model = std::make_unique<ByteModel>();
  impl->decoder = make_byte_piece_decoder();
  const char* names[] = {"<unk>", "<s>", "</s>"};
  for (int32_t id = 0; id < 3; ++id) impl->added.add(AddedToken{id, names[id], /*special=*/true});
  impl->added.finalize(nullptr);
  impl->match_added_tokens = false;
  impl->prefix_ids = {1};
  impl->bos_id = 1;
  impl->eos_ids = {2};
  impl->bos_text = "<s>";
  impl->eos_text = "</s>";
  return impl;
}

}  // namespace tok

Tokenizer::Tokenizer(std::shared_ptr<const tok::TokenizerImpl> impl)
    : impl_(std::move(impl)), bos_id_(impl_->bos_id), eos_ids_(impl_->eos_ids) {
  if (impl_->chat_template.empty()) {
    chat_status_ = Status::invalid_argument("the model (" + impl_->source +
                                            ") has no chat template; name one with --chat-template");
  } else {
    set_template(ChatTemplate::detect(impl_->chat_template, ChatTokens{impl_->bos_text, impl_->eos_text}));
  }
}

Result<Tokenizer> Tokenizer::load(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    const fs::path dir(path);
    const fs::path json = dir / "tokenizer.json";
    if (!fs::exists(json, ec)) {
      return Status::not_found("no tokenizer.json in " + path);
    }
    auto opt = [&](const char* name) {
      const fs::path p = dir / name;
      return fs::exists(p, ec) ? p.string() : std::string();
    };
    PDCTL_ASSIGN_OR_RETURN(auto impl, tok::load_hf(json.string(), opt("tokenizer_config.json"),
                                                   opt("generation_config.json")));
    return Tokenizer(std::move(impl));
  }
  if (!fs::exists(path, ec)) return Status::not_found("no such file or directory: " + path);
  if (path.ends_with(".gguf")) {
    PDCTL_ASSIGN_OR_RETURN(GgufFile gguf, GgufFile::open(path));
    return from_gguf(gguf);
  }
  // A tokenizer.json given by name: its siblings are read when present.
  const fs::path dir = fs::path(path).parent_path();
  auto sibling = [&](const char* name) {
    const fs::path p = dir / name;
    return fs::exists(p, ec) ? p.string() : std::string();
  };
  PDCTL_ASSIGN_OR_RETURN(auto impl, tok::load_hf(path, sibling("tokenizer_config.json"),
                                                 sibling("generation_config.json")));
  return Tokenizer(std::move(impl));
}

Result<Tokenizer> Tokenizer::from_gguf(const GgufFile& gguf) {
  auto impl = tok::load_gguf(gguf);
  if (!impl) return std::move(impl).status().with_context(gguf.path());
  return Tokenizer(std::move(impl).value());
}

Tokenizer Tokenizer::byte_level() { return Tokenizer(tok::make_byte_level()); }

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_special_tokens) ids = impl_->prefix_ids;
  if (unicode::is_valid_utf8(text)) {
    impl_->encode_text(text, ids);
  } else {
    impl_->encode_text(unicode::utf8_lossy(text), ids);
  }
  if (add_special_tokens) ids.insert(ids.end(), impl_->suffix_ids.begin(), impl_->suffix_ids.end());
  return ids;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  return impl_->decode(ids, skip_special_tokens);
}

IncrementalDecoder Tokenizer::incremental_decoder(bool skip_special_tokens) const {
  return IncrementalDecoder(impl_, skip_special_tokens);
}

bool Tokenizer::is_eos(int32_t id) const {
  return std::find(eos_ids_.begin(), eos_ids_.end(), id) != eos_ids_.end();
}

bool Tokenizer::adds_bos() const {
  return bos_id_ >= 0 && !impl_->prefix_ids.empty() && impl_->prefix_ids.front() == bos_id_;
}

void Tokenizer::add_eos_ids(std::span<const int32_t> ids) {
  for (int32_t id : ids)
    if (id >= 0 && !is_eos(id)) eos_ids_.push_back(id);
}

size_t Tokenizer::vocab_size() const { return impl_->vocab_size(); }

std::optional<std::string> Tokenizer::token_text(int32_t id) const {
  auto s = impl_->token_string(id);
  if (!s) return std::nullopt;
  return std::string(*s);
}

std::string Tokenizer::token_bytes(int32_t id) const {
  auto s = impl_->token_string(id);
  if (!s) return {};
  std::string piece(*s);
  if (impl_->decoder) impl_->decoder->raw_piece(piece);
  return piece;
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view text) const {
  if (auto id = impl_->added.find(text)) return id;
  return impl_->model->token_to_id(text);
}

bool Tokenizer::is_special(int32_t id) const { return impl_->added.is_special(id); }

Result<RenderedPrompt> Tokenizer::render_chat(std::span<const ChatMessage> messages,
                                              const ChatOptions& options) const {
  if (!chat_) return chat_status_;
  return chat_->render(messages, options);
}

void Tokenizer::set_template(Result<ChatTemplate> t) {
  if (chat_eot_id_ >= 0) {
    std::erase(eos_ids_, chat_eot_id_);
    chat_eot_id_ = -1;
  }
  if (!t) {
    chat_.reset();
    chat_status_ = std::move(t).status().with_context(impl_->source);
    return;
  }
  chat_ = std::move(t).value();
  chat_status_ = Status::ok();
  // The token that ends an assistant turn ends generation too (Llama-3's <|eot_id|> when the
  // model's EOS is <|end_of_text|>).
  if (auto id = token_to_id(chat_->end_of_turn()); id && !is_eos(*id)) {
    eos_ids_.push_back(*id);
    chat_eot_id_ = *id;
  }
}

Status Tokenizer::set_chat_template(std::string_view name) {
  auto t = ChatTemplate::named(name, ChatTokens{impl_->bos_text, impl_->eos_text});
  if (!t) return std::move(t).status();
  set_template(std::move(t));
  return Status::ok();
}

std::string Tokenizer::chat_template_name() const { return chat_ ? chat_->name() : std::string(); }

const std::string& Tokenizer::source() const { return impl_->source; }

}  // namespace pdctl::engine

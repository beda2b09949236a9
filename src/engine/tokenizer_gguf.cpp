// Loading a tokenizer from GGUF metadata (tokenizer.ggml.*), as llama.cpp reads it, into the
// same pipeline a tokenizer.json describes:
//   "llama": SentencePiece over scores; spaces become "▁" with one added in front of each
//            text segment (add_space_prefix); byte fallback.
//   "gpt2":  byte-level BPE over tokenizer.ggml.merges, split first by the regex that
//            tokenizer.ggml.pre names (llama-bpe and qwen2 families, and gpt2's own).
// Control, unknown and user-defined tokens are matched in the text before the model runs.
#include <algorithm>

#include "engine/gguf.h"
#include "engine/tokenizer_impl.h"

namespace pdctl::engine::tok {
namespace {

// llama.cpp's token types.
enum TokenType : int64_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

constexpr std::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kGpt2Regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct PreType {
  std::string_view regex;
  bool ignore_merges;
  bool nfc;
  bool add_bos;  // llama.cpp's default for the family
};

std::optional<PreType> pre_type(std::string_view pre) {
  if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3" || pre == "dbrx" || pre == "smaug-bpe") {
    return PreType{kLlama3Regex, true, false, true};
  }
  if (pre == "qwen2" || pre == "deepseek-r1-qwen" || pre == "stablelm2") return PreType{kQwen2Regex, false, true, false};
  if (pre == "default" || pre == "gpt-2" || pre == "gpt2" || pre == "mpt" || pre == "olmo") {
    return PreType{kGpt2Regex, false, false, false};
  }
  return std::nullopt;
}

template <class T>
Result<std::optional<T>> optional_key(const GgufFile& g, const std::string& key, Result<T> (GgufFile::*get)(const std::string&) const) {
  if (!g.has(key)) return std::optional<T>();
  auto r = (g.*get)(key);
  if (!r) return std::move(r).status();
  return std::optional<T>(std::move(r).value());
}

}  // namespace

Result<std::shared_ptr<TokenizerImpl>> load_gguf(const GgufFile& g) {
  auto impl = std::make_shared<TokenizerImpl>();
  impl->source = g.path();
  PDCTL_ASSIGN_OR_RETURN(std::string kind, g.get_string("tokenizer.ggml.model"));
  PDCTL_ASSIGN_OR_RETURN(std::vector<std::string> tokens, g.get_string_array("tokenizer.ggml.tokens"));
  PDCTL_ASSIGN_OR_RETURN(auto types_opt, optional_key<std::vector<int64_t>>(g, "tokenizer.ggml.token_type", &GgufFile::get_int_array));
  std::vector<int64_t> types = types_opt ? *types_opt : std::vector<int64_t>(tokens.size(), kNormal);
  if (types.size() != tokens.size()) {
    return Status::corrupt("tokenizer.ggml.token_type has " + std::to_string(types.size()) + " entries for " +
                           std::to_string(tokens.size()) + " tokens");
  }
  auto id_key = [&](const char* key) -> Result<int32_t> {
    PDCTL_ASSIGN_OR_RETURN(auto v, optional_key<int64_t>(g, key, &GgufFile::get_int));
    if (!v) return -1;
    if (*v < 0 || *v >= static_cast<int64_t>(tokens.size())) {
      // llama.cpp writes -1 (as an unsigned 0xFFFFFFFF) for "none".
      if (*v == 0xFFFFFFFFLL || *v == -1) return -1;
      return Status::corrupt(std::string(key) + " = " + std::to_string(*v) + " is not a token id");
    }
    return static_cast<int32_t>(*v);
  };
  PDCTL_ASSIGN_OR_RETURN(int32_t bos, id_key("tokenizer.ggml.bos_token_id"));
  PDCTL_ASSIGN_OR_RETURN(int32_t eos, id_key("tokenizer.ggml.eos_token_id"));
  PDCTL_ASSIGN_OR_RETURN(int32_t eot, id_key("tokenizer.ggml.eot_token_id"));
  PDCTL_ASSIGN_OR_RETURN(int32_t eom, id_key("tokenizer.ggml.eom_token_id"));
  PDCTL_ASSIGN_OR_RETURN(int32_t unk, id_key("tokenizer.ggml.unknown_token_id"));
  PDCTL_ASSIGN_OR_RETURN(auto add_bos_key, optional_key<bool>(g, "tokenizer.ggml.add_bos_token", &GgufFile::get_bool));
  PDCTL_ASSIGN_OR_RETURN(auto add_eos_key, optional_key<bool>(g, "tokenizer.ggml.add_eos_token", &GgufFile::get_bool));
  PDCTL_ASSIGN_OR_RETURN(auto template_key, optional_key<std::string>(g, "tokenizer.chat_template", &GgufFile::get_string));

  std::vector<std::pair<std::string, int32_t>> entries;
  entries.reserve(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    entries.emplace_back(tokens[i], static_cast<int32_t>(i));
    const int64_t t = types[i];
    if (t == kControl || t == kUnknown || t == kUserDefined) {
      AddedToken a;
      a.id = static_cast<int32_t>(i);
      a.content = tokens[i];
      a.special = t != kUserDefined;
      impl->added.add(std::move(a));
    }
  }
  PDCTL_ASSIGN_OR_RETURN(Vocabulary vocab, Vocabulary::build(std::move(entries)));

  bool add_bos = false;
  if (kind == "llama") {
    PDCTL_ASSIGN_OR_RETURN(std::vector<double> scores, g.get_float_array("tokenizer.ggml.scores"));
    PDCTL_ASSIGN_OR_RETURN(auto space_key, optional_key<bool>(g, "tokenizer.ggml.add_space_prefix", &GgufFile::get_bool));
    const bool add_space = space_key.value_or(true);
    if (unk < 0) {
      for (size_t i = 0; i < types.size(); ++i)
        if (types[i] == kUnknown) unk = static_cast<int32_t>(i);
    }
    if (bos < 0 && !g.has("tokenizer.ggml.bos_token_id")) bos = 1;  // llama.cpp's SPM defaults
    if (eos < 0 && !g.has("tokenizer.ggml.eos_token_id")) eos = 2;
    std::vector<float> fscores(scores.begin(), scores.end());
    auto model = SpmScoreModel::build(std::move(vocab), std::move(fscores), unk >= 0 ? std::optional<int32_t>(unk) : std::nullopt);
    if (!model) return std::move(model).status().with_context("tokenizer.ggml.scores");
    impl->model = std::move(model).value();
    impl->normalizer = make_sentencepiece_normalizer(add_space);
    impl->decoder = make_sentencepiece_decoder(add_space);
    add_bos = true;
  } else if (kind == "gpt2") {
    PDCTL_ASSIGN_OR_RETURN(std::vector<std::string> merge_lines, g.get_string_array("tokenizer.ggml.merges"));
    PDCTL_ASSIGN_OR_RETURN(auto pre_key, optional_key<std::string>(g, "tokenizer.ggml.pre", &GgufFile::get_string));
    const std::string pre = pre_key.value_or("default");
    auto pt = pre_type(pre);
    if (!pt) {
      return Status::unsupported("tokenizer.ggml.pre = '" + pre +
                                 "' is not supported (llama-bpe, llama3, qwen2, gpt2 and their aliases are)");
    }
    std::vector<std::pair<std::string, std::string>> merges;
    merges.reserve(merge_lines.size());
    for (size_t i = 0; i < merge_lines.size(); ++i) {
      const std::string& m = merge_lines[i];
      const size_t sp = m.find(' ', 1);  // a part may itself start with a space
      if (sp == std::string::npos) {
        return Status::corrupt("tokenizer.ggml.merges[" + std::to_string(i) + "] = '" + m + "' has no space");
      }
      merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
    }
    BpeOptions opt;
    opt.ignore_merges = pt->ignore_merges;
    auto model = BpeModel::build(std::move(vocab), merges, std::move(opt));
    if (!model) return std::move(model).status().with_context("tokenizer.ggml.merges");
    impl->model = std::move(model).value();
    if (pt->nfc) impl->normalizer = make_nfc_normalizer();
    auto pre_tok = make_split_byte_level(pt->regex);
    if (!pre_tok) return std::move(pre_tok).status();
    impl->pre_tokenizer = std::move(pre_tok).value();
    impl->decoder = make_byte_level_decoder();
    add_bos = pt->add_bos;
  } else {
    return Status::unsupported("tokenizer.ggml.model = '" + kind + "' is not supported (llama, gpt2 are)");
  }
  impl->added.finalize(impl->normalizer.get());

  add_bos = add_bos_key.value_or(add_bos);
  const bool add_eos = add_eos_key.value_or(false);
  impl->bos_id = bos;
  if (add_bos && bos >= 0) impl->prefix_ids.push_back(bos);
  if (add_eos && eos >= 0) impl->suffix_ids.push_back(eos);
  for (int32_t id : {eos, eot, eom}) {
    if (id >= 0 && std::find(impl->eos_ids.begin(), impl->eos_ids.end(), id) == impl->eos_ids.end()) {
      impl->eos_ids.push_back(id);
    }
  }
  if (bos >= 0) impl->bos_text = tokens[bos];
  if (eos >= 0) impl->eos_text = tokens[eos];
  if (template_key) impl->chat_template = *template_key;
  return impl;
}

}  // namespace pdctl::engine::tok

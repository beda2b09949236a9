// Loading a Hugging Face tokenizer: tokenizer.json (the pipeline), tokenizer_config.json
// (BOS/EOS, add_bos_token, the chat template) and generation_config.json (more EOS ids).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/tokenizer_impl.h"
#include "engine/tokenizer_json.h"

namespace pdctl::engine::tok {
namespace {

Result<std::string> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::io("cannot open " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return Status::io("cannot read " + path);
  return ss.str();
}

Result<json> read_json(const std::string& path) {
  PDCTL_ASSIGN_OR_RETURN(std::string text, read_file(path));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::corrupt(path + ": not valid JSON");
  return j;
}

Result<std::unique_ptr<TokenModel>> parse_model(const json& j) {
  const std::string where = "model";
  PDCTL_ASSIGN_OR_RETURN(std::string type, get_string_or(j, "type", where, "BPE"));
  if (type != "BPE") return Status::unsupported("model.type '" + type + "' is not supported (only BPE)");
  const json* vocab = member(j, "vocab");
  if (vocab == nullptr || !vocab->is_object()) return Status::corrupt("model.vocab is missing or not an object");
  std::vector<std::pair<std::string, int32_t>> entries;
  entries.reserve(vocab->size());
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    if (!it.value().is_number_integer()) return Status::corrupt("model.vocab['" + it.key() + "'] is not an integer");
    const auto id = it.value().get<int64_t>();
    if (id < 0 || id > INT32_MAX) return Status::corrupt("model.vocab['" + it.key() + "'] is out of range");
    entries.emplace_back(it.key(), static_cast<int32_t>(id));
  }
  const json* merges = member(j, "merges");
  std::vector<std::pair<std::string, std::string>> pairs;
  if (merges != nullptr) {
    if (!merges->is_array()) return Status::corrupt("model.merges is not a list");
    pairs.reserve(merges->size());
    size_t rank = 0;
    for (const json& m : *merges) {
      const std::string w = "model.merges[" + std::to_string(rank) + "]";
      if (m.is_string()) {
        // The legacy form "a b"; header lines "#version" are skipped.
        const std::string& s = m.get_ref<const std::string&>();
        if (s.starts_with("#version")) continue;
        const size_t sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
          return Status::corrupt(w + " is not two tokens separated by one space");
        }
        pairs.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        pairs.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      } else {
        return Status::corrupt(w + " is neither \"a b\" nor [\"a\", \"b\"]");
      }
      ++rank;
    }
  }
  BpeOptions opt;
  if (const json* u = member(j, "unk_token")) {
    if (!u->is_string()) return Status::corrupt("model.unk_token is not a string");
    opt.unk_token = u->get<std::string>();
  }
  PDCTL_ASSIGN_OR_RETURN(opt.fuse_unk, get_bool_or(j, "fuse_unk", where, false));
  PDCTL_ASSIGN_OR_RETURN(opt.byte_fallback, get_bool_or(j, "byte_fallback", where, false));
  PDCTL_ASSIGN_OR_RETURN(opt.ignore_merges, get_bool_or(j, "ignore_merges", where, false));
  PDCTL_ASSIGN_OR_RETURN(opt.continuing_subword_prefix, get_string_or(j, "continuing_subword_prefix", where, ""));
  PDCTL_ASSIGN_OR_RETURN(opt.end_of_word_suffix, get_string_or(j, "end_of_word_suffix", where, ""));
  PDCTL_ASSIGN_OR_RETURN(Vocabulary v, Vocabulary::build(std::move(entries)));
  auto model = BpeModel::build(std::move(v), pairs, std::move(opt));
  if (!model) return std::move(model).status().with_context("model");
  return std::unique_ptr<TokenModel>(std::move(model).value());
}

Status parse_added_tokens(const json& root, AddedVocabulary& added) {
  const json* list = member(root, "added_tokens");
  if (list == nullptr) return Status::ok();
  if (!list->is_array()) return Status::corrupt("added_tokens is not a list");
  for (size_t i = 0; i < list->size(); ++i) {
    const json& t = (*list)[i];
    const std::string w = "added_tokens[" + std::to_string(i) + "]";
    AddedToken a;
    PDCTL_ASSIGN_OR_RETURN(int64_t id, get_int_or(t, "id", w, -1));
    if (id < 0 || id > INT32_MAX) return Status::corrupt(w + ".id is missing or out of range");
    a.id = static_cast<int32_t>(id);
    PDCTL_ASSIGN_OR_RETURN(a.content, get_string(t, "content", w));
    PDCTL_ASSIGN_OR_RETURN(a.special, get_bool_or(t, "special", w, false));
    PDCTL_ASSIGN_OR_RETURN(a.single_word, get_bool_or(t, "single_word", w, false));
    PDCTL_ASSIGN_OR_RETURN(a.lstrip, get_bool_or(t, "lstrip", w, false));
    PDCTL_ASSIGN_OR_RETURN(a.rstrip, get_bool_or(t, "rstrip", w, false));
    PDCTL_ASSIGN_OR_RETURN(a.normalized, get_bool_or(t, "normalized", w, !a.special));
    added.add(std::move(a));
  }
  return Status::ok();
}

// The ids a post-processor puts around one sequence.
Status parse_post_processor(const json& j, const std::string& where, const TokenizerImpl& impl,
                            std::vector<int32_t>& prefix, std::vector<int32_t>& suffix) {
  PDCTL_ASSIGN_OR_RETURN(std::string type, get_string(j, "type", where));
  if (type == "ByteLevel") return Status::ok();  // offsets only
  if (type == "Sequence") {
    const json* list = member(j, "processors");
    if (list == nullptr || !list->is_array()) return Status::corrupt(where + ".processors is not a list");
    for (size_t i = 0; i < list->size(); ++i) {
      std::vector<int32_t> p, s;
      PDCTL_RETURN_IF_ERROR(parse_post_processor((*list)[i], where + ".processors[" + std::to_string(i) + "]",
                                                 impl, p, s));
      // Each processor wraps what the previous one made.
      prefix.insert(prefix.begin(), p.begin(), p.end());
      suffix.insert(suffix.end(), s.begin(), s.end());
    }
    return Status::ok();
  }
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    for (const char* key : {"cls", "sep"}) {
      const json* v = member(j, key);
      if (v == nullptr || !v->is_array() || v->size() != 2 || !(*v)[1].is_number_integer()) {
        return Status::corrupt(path_of(where, key) + " is not [token, id]");
      }
      (std::string(key) == "cls" ? prefix : suffix).push_back((*v)[1].get<int32_t>());
    }
    return Status::ok();
  }
  if (type == "TemplateProcessing") {
    const json* single = member(j, "single");
    if (single == nullptr || !single->is_array()) return Status::corrupt(where + ".single is not a list");
    const json* specials = member(j, "special_tokens");
    bool after = false;
    for (size_t i = 0; i < single->size(); ++i) {
      const json& item = (*single)[i];
      const std::string w = where + ".single[" + std::to_string(i) + "]";
      if (member(item, "Sequence") != nullptr) {
        after = true;
        continue;
      }
      const json* st = member(item, "SpecialToken");
      if (st == nullptr) return Status::corrupt(w + " is neither Sequence nor SpecialToken");
      PDCTL_ASSIGN_OR_RETURN(std::string name, get_string(*st, "id", w + ".SpecialToken"));
      const json* def = specials != nullptr ? member(*specials, name.c_str()) : nullptr;
      std::vector<int32_t> ids;
      const json* def_ids = def != nullptr ? member(*def, "ids") : nullptr;
      if (def_ids != nullptr && def_ids->is_array()) {
        for (const json& id : *def_ids) {
          if (!id.is_number_integer()) return Status::corrupt(where + ".special_tokens['" + name + "'].ids is not a list of ids");
          ids.push_back(id.get<int32_t>());
        }
      } else if (auto id = impl.added.find(name)) {
        ids.push_back(*id);
      } else {
        return Status::corrupt(w + ": special token '" + name + "' is not defined");
      }
      (after ? suffix : prefix).insert((after ? suffix : prefix).end(), ids.begin(), ids.end());
    }
    return Status::ok();
  }
  return Status::unsupported(where + ": post-processor type '" + type + "' is not supported");
}

std::optional<int32_t> find_token(const TokenizerImpl& impl, const std::string& text) {
  if (auto id = impl.added.find(text)) return id;
  return impl.model->token_to_id(text);
}

Status apply_config(const json& cfg, TokenizerImpl& impl) {
  auto token_field = [&](const char* key, int32_t& id, std::string& text) -> Status {
    const json* v = member(cfg, key);
    if (v == nullptr) return Status::ok();
    auto content = token_content(*v);
    if (!content) return Status::corrupt(std::string(key) + " is neither a string nor a token object");
    auto found = find_token(impl, *content);
    if (!found) return Status::corrupt(std::string(key) + " '" + *content + "' is not in the vocabulary");
    id = *found;
    text = *content;
    return Status::ok();
  };
  int32_t eos = -1;
  PDCTL_RETURN_IF_ERROR(token_field("bos_token", impl.bos_id, impl.bos_text));
  PDCTL_RETURN_IF_ERROR(token_field("eos_token", eos, impl.eos_text));
  if (eos >= 0) impl.eos_ids.push_back(eos);

  // Transformers' Llama-style tokenizers rebuild the post-processor from these flags.
  if (const json* v = member(cfg, "add_bos_token"); v != nullptr && v->is_boolean() && impl.bos_id >= 0) {
    const bool has = !impl.prefix_ids.empty() && impl.prefix_ids.front() == impl.bos_id;
    if (v->get<bool>() && !has) impl.prefix_ids.insert(impl.prefix_ids.begin(), impl.bos_id);
    if (!v->get<bool>() && has) impl.prefix_ids.erase(impl.prefix_ids.begin());
  }
  if (const json* v = member(cfg, "add_eos_token"); v != nullptr && v->is_boolean() && eos >= 0) {
    const bool has = !impl.suffix_ids.empty() && impl.suffix_ids.back() == eos;
    if (v->get<bool>() && !has) impl.suffix_ids.push_back(eos);
    if (!v->get<bool>() && has) impl.suffix_ids.pop_back();
  }

  if (const json* t = member(cfg, "chat_template")) {
    if (t->is_string()) {
      impl.chat_template = t->get<std::string>();
    } else if (t->is_array()) {
      // Named templates: [{"name": "default", "template": "..."}, ...]
      for (const json& e : *t) {
        const json* name = member(e, "name");
        const json* text = member(e, "template");
        if (name != nullptr && name->is_string() && *name == "default" && text != nullptr && text->is_string()) {
          impl.chat_template = text->get<std::string>();
        }
      }
    } else {
      return Status::corrupt("chat_template is neither a string nor a list of named templates");
    }
  }
  return Status::ok();
}

Status apply_generation_config(const json& cfg, TokenizerImpl& impl) {
  if (const json* v = member(cfg, "eos_token_id")) {
    std::vector<int32_t> ids;
    if (v->is_number_integer()) {
      ids.push_back(v->get<int32_t>());
    } else if (v->is_array()) {
      for (const json& e : *v) {
        if (!e.is_number_integer()) return Status::corrupt("eos_token_id is not a list of ids");
        ids.push_back(e.get<int32_t>());
      }
    } else {
      return Status::corrupt("eos_token_id is neither an id nor a list of ids");
    }
    for (int32_t id : ids)
      if (std::find(impl.eos_ids.begin(), impl.eos_ids.end(), id) == impl.eos_ids.end()) impl.eos_ids.push_back(id);
  }
  if (const json* v = member(cfg, "bos_token_id"); v != nullptr && v->is_number_integer() && impl.bos_id < 0) {
    impl.bos_id = v->get<int32_t>();
  }
  return Status::ok();
}

}  // namespace

Result<std::shared_ptr<TokenizerImpl>> load_hf(const std::string& tokenizer_json, const std::string& config,
                                               const std::string& generation_config) {
  auto impl = std::make_shared<TokenizerImpl>();
  impl->source = tokenizer_json;
  auto ctx = [&](Status st) { return std::move(st).with_context(tokenizer_json); };

  PDCTL_ASSIGN_OR_RETURN(json root, read_json(tokenizer_json));
  if (!root.is_object()) return ctx(Status::corrupt("not a JSON object"));
  const json* model = member(root, "model");
  if (model == nullptr) return ctx(Status::corrupt("model is missing"));
  auto m = parse_model(*model);
  if (!m) return ctx(std::move(m).status());
  impl->model = std::move(m).value();
  if (Status st = parse_added_tokens(root, impl->added); !st) return ctx(std::move(st));
  if (const json* n = member(root, "normalizer")) {
    auto r = parse_normalizer(*n, "normalizer");
    if (!r) return ctx(std::move(r).status());
    impl->normalizer = std::move(r).value();
  }
  if (const json* p = member(root, "pre_tokenizer")) {
    auto r = parse_pre_tokenizer(*p, "pre_tokenizer");
    if (!r) return ctx(std::move(r).status());
    impl->pre_tokenizer = std::move(r).value();
  }
  if (const json* d = member(root, "decoder")) {
    auto r = parse_decoder(*d, "decoder");
    if (!r) return ctx(std::move(r).status());
    impl->decoder = std::move(r).value();
  }
  impl->added.finalize(impl->normalizer.get());
  if (const json* p = member(root, "post_processor")) {
    if (Status st = parse_post_processor(*p, "post_processor", *impl, impl->prefix_ids, impl->suffix_ids); !st) {
      return ctx(std::move(st));
    }
  }
  // Without a tokenizer_config.json, BOS is what the post-processor puts first.
  if (!impl->prefix_ids.empty()) {
    impl->bos_id = impl->prefix_ids.front();
    impl->bos_text = std::string(impl->token_string(impl->bos_id).value_or(""));
  }

  if (!config.empty()) {
    auto cfg = read_json(config);
    if (!cfg) return std::move(cfg).status();
    if (Status st = apply_config(*cfg, *impl); !st) return std::move(st).with_context(config);
  }
  if (impl->chat_template.empty()) {
    // Newer checkpoints keep the template in its own file.
    const auto jinja = std::filesystem::path(tokenizer_json).parent_path() / "chat_template.jinja";
    std::error_code ec;
    if (std::filesystem::exists(jinja, ec)) {
      PDCTL_ASSIGN_OR_RETURN(impl->chat_template, read_file(jinja.string()));
    }
  }
  if (!generation_config.empty()) {
    auto gen = read_json(generation_config);
    if (!gen) return std::move(gen).status();
    if (Status st = apply_generation_config(*gen, *impl); !st) return std::move(st).with_context(generation_config);
  }
  if (impl->eos_text.empty() && !impl->eos_ids.empty()) {
    impl->eos_text = std::string(impl->token_string(impl->eos_ids.front()).value_or(""));
  }
  return impl;
}

}  // namespace pdctl::engine::tok

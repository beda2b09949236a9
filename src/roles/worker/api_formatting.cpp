#include "roles/worker/api_formatting.h"

namespace pdctl::worker {

using nlohmann::json;
using engine::FinishInfo;

std::string dump_json(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

namespace {

json matched_value(const FinishInfo& f) {
  if (const int32_t* id = std::get_if<int32_t>(&f.matched)) return *id;
  if (const std::string* s = std::get_if<std::string>(&f.matched)) return *s;
  return nullptr;
}

json piece_or_null(const engine::Tokenizer* tok, int32_t id) {
  if (!tok) return nullptr;
  return tok->token_bytes(id);
}

// The bytes of a string as a JSON list of integers (OpenAI chat's `bytes`).
json byte_list(const std::string& s) {
  json out = json::array();
  for (unsigned char c : s) out.push_back(static_cast<int>(c));
  return out;
}

}  // namespace

json finish_reason_json(const ItemSpec& spec, const ItemOutput& out) {
  if (!out.finished) return nullptr;
  const FinishInfo& f = out.finish;
  switch (f.type) {
    case FinishInfo::Type::kStop: return json{{"type", "stop"}, {"matched", matched_value(f)}};
    case FinishInfo::Type::kLength: return json{{"type", "length"}, {"length", spec.req.sampling.max_new_tokens}};
    case FinishInfo::Type::kAbort:
      return json{{"type", "abort"}, {"message", f.message.empty() ? std::string("aborted") : f.message}};
  }
  return nullptr;
}

json openai_finish_reason(const ItemOutput& out) {
  if (!out.finished) return nullptr;
  switch (out.finish.type) {
    case FinishInfo::Type::kStop: return "stop";
    case FinishInfo::Type::kLength: return "length";
    case FinishInfo::Type::kAbort: return "abort";
  }
  return nullptr;
}

json matched_stop_json(const ItemOutput& out) {
  if (!out.finished || out.finish.type != FinishInfo::Type::kStop) return nullptr;
  return matched_value(out.finish);
}

std::string token_piece(const engine::Tokenizer* tok, int32_t id) { return tok ? tok->token_bytes(id) : std::string(); }

json logprob_triples(const std::vector<engine::TokenLogprobInfo>& lp, size_t from, size_t to,
                     const engine::Tokenizer* text_from, bool null_first) {
  json out = json::array();
  for (size_t i = from; i < to && i < lp.size(); ++i) {
    json logprob = (null_first && i == 0) ? json(nullptr) : json(lp[i].logprob);
    out.push_back(json::array({std::move(logprob), lp[i].token, piece_or_null(text_from, lp[i].token)}));
  }
  return out;
}

json top_logprob_lists(const std::vector<engine::TokenLogprobInfo>& lp, size_t from, size_t to,
                       const engine::Tokenizer* text_from, bool null_first) {
  json out = json::array();
  for (size_t i = from; i < to && i < lp.size(); ++i) {
    if (null_first && i == 0) {
      out.push_back(nullptr);
      continue;
    }
    json alts = json::array();
    for (const engine::TokenLogprob& t : lp[i].top) {
      alts.push_back(json::array({t.logprob, t.token, piece_or_null(text_from, t.token)}));
    }
    out.push_back(std::move(alts));
  }
  return out;
}

json meta_info_json(const ItemSpec& spec, const ItemOutput& out, const engine::Tokenizer* text_from) {
  json m;
  m["id"] = spec.req.rid;
  m["finish_reason"] = finish_reason_json(spec, out);
  m["prompt_tokens"] = out.prompt_tokens > 0 ? out.prompt_tokens : static_cast<int>(spec.req.input_ids.size());
  m["completion_tokens"] = out.completion_tokens;
  m["cached_tokens"] = out.cached_tokens;
  if (spec.req.sampling.return_logprob) {
    // The engine reports the first prompt position's (missing) logprob as 0; SGLang shows null.
    const bool null_first = spec.req.logprob_start_len == 0;
    m["input_token_logprobs"] = logprob_triples(out.input_logprobs, 0, out.input_logprobs.size(), text_from, null_first);
    m["output_token_logprobs"] = logprob_triples(out.logprobs, 0, out.logprobs.size(), text_from, false);
    if (spec.req.sampling.top_logprobs_num > 0) {
      m["input_top_logprobs"] =
          top_logprob_lists(out.input_logprobs, 0, out.input_logprobs.size(), text_from, null_first);
      m["output_top_logprobs"] = top_logprob_lists(out.logprobs, 0, out.logprobs.size(), text_from, false);
    }
  }
  if (out.finished) m["e2e_latency"] = out.e2e_latency;
  return m;
}

json generate_object(const ItemSpec& spec, const ItemOutput& out, const engine::Tokenizer* tok, bool text_in_logprobs) {
  json o;
  if (tok) o["text"] = out.text;
  o["output_ids"] = out.ids;
  o["meta_info"] = meta_info_json(spec, out, text_in_logprobs ? tok : nullptr);
  return o;
}

json completion_logprobs(const engine::Tokenizer* tok, const std::vector<engine::TokenLogprobInfo>& lp, size_t from,
                         size_t to, int top) {
  json tokens = json::array(), token_logprobs = json::array(), tops = json::array(), offsets = json::array();
  size_t offset = 0;
  for (size_t i = 0; i < to && i < lp.size(); ++i) {
    std::string piece = token_piece(tok, lp[i].token);
    if (i >= from) {
      tokens.push_back(piece);
      token_logprobs.push_back(lp[i].logprob);
      offsets.push_back(offset);
      if (top > 0) {
        // The best alternative first; of two alternatives with the same text the better one
        // stays (SGLang's setdefault).
        json alts = json::object();
        for (const engine::TokenLogprob& t : lp[i].top) {
          std::string key = token_piece(tok, t.token);
          if (!alts.contains(key)) alts[key] = t.logprob;
        }
        tops.push_back(std::move(alts));
      }
    }
    offset += piece.size();
  }
  return json{{"text_offset", std::move(offsets)},
              {"token_logprobs", std::move(token_logprobs)},
              {"tokens", std::move(tokens)},
              {"top_logprobs", std::move(tops)}};
}

json chat_logprobs(const engine::Tokenizer* tok, const std::vector<engine::TokenLogprobInfo>& lp, size_t from,
                   size_t to, int top) {
  json content = json::array();
  for (size_t i = from; i < to && i < lp.size(); ++i) {
    std::string piece = token_piece(tok, lp[i].token);
    json tops = json::array();
    for (size_t k = 0; k < lp[i].top.size() && static_cast<int>(k) < top; ++k) {
      std::string alt = token_piece(tok, lp[i].top[k].token);
      tops.push_back(json{{"token", alt}, {"bytes", byte_list(alt)}, {"logprob", lp[i].top[k].logprob}});
    }
    content.push_back(
        json{{"token", piece}, {"bytes", byte_list(piece)}, {"logprob", lp[i].logprob}, {"top_logprobs", std::move(tops)}});
  }
  return json{{"content", std::move(content)}};
}

json usage_json(const ApiCall& call) {
  int64_t prompt = 0, completion = 0, cached = 0;
  for (size_t i = 0; i < call.size(); ++i) {
    const ItemOutput& o = call.out(i);
    completion += o.completion_tokens;
    if (call.spec(i).sample_index == 0) {
      prompt += o.prompt_tokens > 0 ? o.prompt_tokens : static_cast<int64_t>(call.spec(i).req.input_ids.size());
      cached += o.cached_tokens;
    }
  }
  return json{{"prompt_tokens", prompt},
              {"completion_tokens", completion},
              {"total_tokens", prompt + completion},
              {"prompt_tokens_details", {{"cached_tokens", cached}}}};
}

}  // namespace pdctl::worker

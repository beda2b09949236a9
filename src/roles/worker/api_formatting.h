#pragma once
// Engine output to the JSON of the worker API, field for field as SGLang and OpenAI write
// it: /generate's {text, output_ids, meta_info} with its finish_reason objects and
// [logprob, token_id, text] triples, and OpenAI's completion and chat objects (choices,
// logprobs, usage). Pure functions; the ReplyFormats of generate_api and openai_api
// assemble them into replies and events.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/engine_service.h"
#include "engine/tokenizer.h"
#include "roles/worker/api_call.h"

namespace pdctl::worker {

// Compact JSON; bytes that are not UTF-8 (a token that ends mid-character) become U+FFFD.
std::string dump_json(const nlohmann::json& j);

// SGLang's finish_reason: {"type": "stop", "matched": id or string}, {"type": "length",
// "length": max_new_tokens}, {"type": "abort", "message": ...}; null while unfinished.
nlohmann::json finish_reason_json(const ItemSpec& spec, const ItemOutput& out);
// OpenAI's finish_reason string ("stop", "length", "abort") or null, and SGLang's
// matched_stop (the stop token id or string, else null).
nlohmann::json openai_finish_reason(const ItemOutput& out);
nlohmann::json matched_stop_json(const ItemOutput& out);

// The text a token contributes, for logprob displays ("" without a tokenizer).
std::string token_piece(const engine::Tokenizer* tok, int32_t id);

// /generate's logprob lists: [logprob, token_id, text or null] per token of
// `lp[from, to)`; `null_first`: the first entry's logprob is null (the first prompt
// token has none). Top lists: per token, the triples of its alternatives.
nlohmann::json logprob_triples(const std::vector<engine::TokenLogprobInfo>& lp, size_t from, size_t to,
                               const engine::Tokenizer* text_from, bool null_first);
nlohmann::json top_logprob_lists(const std::vector<engine::TokenLogprobInfo>& lp, size_t from, size_t to,
                                 const engine::Tokenizer* text_from, bool null_first);

// /generate's meta_info for an item (cumulative: the whole output so far).
nlohmann::json meta_info_json(const ItemSpec& spec, const ItemOutput& out, const engine::Tokenizer* text_from);
// /generate's object: {"text", "output_ids", "meta_info"}; no "text" without a tokenizer
// (--skip-tokenizer-init), as SGLang's token-id output.
nlohmann::json generate_object(const ItemSpec& spec, const ItemOutput& out, const engine::Tokenizer* tok,
                               bool text_in_logprobs);

// OpenAI completions' logprobs of out.logprobs[from, to): {tokens, token_logprobs,
// top_logprobs, text_offset}; text offsets are byte offsets in the choice's text.
nlohmann::json completion_logprobs(const engine::Tokenizer* tok, const std::vector<engine::TokenLogprobInfo>& lp,
                                   size_t from, size_t to, int top);
// OpenAI chat's logprobs: {"content": [{token, bytes, logprob, top_logprobs}]}.
nlohmann::json chat_logprobs(const engine::Tokenizer* tok, const std::vector<engine::TokenLogprobInfo>& lp,
                             size_t from, size_t to, int top);

// {prompt_tokens, completion_tokens, total_tokens, prompt_tokens_details: {cached_tokens}}
// over a call's items: a prompt's tokens count once for its n samples, as in SGLang.
nlohmann::json usage_json(const ApiCall& call);

}  // namespace pdctl::worker

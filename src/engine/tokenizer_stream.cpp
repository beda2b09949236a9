// The streaming detokenizer. Each step decodes a short window of the latest ids and returns
// what it adds to the window's text decoded one step earlier.
//
// Why a window and not each token alone: decoders join tokens (byte-level BPE splits a
// character over several tokens; SentencePiece spells bytes as <0xE4> tokens) and treat the
// first token specially (the leading space that Strip or Metaspace removes). Both windows
// start at the same token, so whatever the decoder does at the start is the same in both,
// and the difference is exactly what the full decode has there. The window only moves to a
// token whose text is non-empty on its own, so a first-token rule never reaches past it.
// Text is held back while it ends in an incomplete UTF-8 sequence (U+FFFD) or in a run of
// byte-fallback tokens that may still continue (Hugging Face turns a whole run into U+FFFDs
// when it is invalid). Should a window ever disagree with what was sent, the decoder falls back
// to one full decode and resumes from there.
#include "engine/tokenizer.h"
#include "engine/tokenizer_impl.h"
#include "engine/unicode_text.h"

namespace pdctl::engine {

IncrementalDecoder::IncrementalDecoder(std::shared_ptr<const tok::TokenizerImpl> impl, bool skip_special)
    : impl_(std::move(impl)),
      skip_special_(skip_special),
      wait_byte_runs_(impl_->decoder != nullptr && impl_->decoder->joins_byte_runs()) {}

std::string IncrementalDecoder::push(int32_t id) {
  ids_.push_back(id);
  if (wait_byte_runs_) {
    // Ids the decoder never sees (unknown ones, skipped specials) do not end a run.
    auto s = impl_->token_string(id);
    const bool seen = s.has_value() && !(skip_special_ && impl_->added.is_special(id));
    if (seen) in_byte_run_ = tok::parse_byte_piece(*s) >= 0;
    if (in_byte_run_) return {};
  }
  return advance(false);
}

std::string IncrementalDecoder::finish() { return advance(true); }

std::string IncrementalDecoder::advance(bool final) {
  const std::span<const int32_t> all(ids_);
  std::string text = impl_->decode(all.subspan(anchor_), skip_special_);
  if (!final && (text.size() <= prefix_.size() || text.ends_with(unicode::kReplacementUtf8))) return {};
  if (text.size() < prefix_.size() || text.compare(0, prefix_.size(), prefix_) != 0) return resync(final);
  std::string out = text.substr(prefix_.size());
  // Next window: from the old read point, when that token has text of its own.
  std::string next = impl_->decode(all.subspan(read_), skip_special_);
  if (!next.empty()) {
    anchor_ = read_;
    prefix_ = std::move(next);
  } else {
    prefix_ = std::move(text);
  }
  read_ = ids_.size();
  emitted_ += out;
  return out;
}

std::string IncrementalDecoder::resync(bool final) {
  std::string full = impl_->decode(ids_, skip_special_);
  if (full.compare(0, emitted_.size(), emitted_) != 0) return {};  // what was sent cannot be taken back
  if (!final && (full.size() <= emitted_.size() || full.ends_with(unicode::kReplacementUtf8))) return {};
  std::string out = full.substr(emitted_.size());
  anchor_ = 0;
  read_ = ids_.size();
  prefix_ = std::move(full);
  emitted_ += out;
  return out;
}

}  // namespace pdctl::engine

#include "engine/scheduler_text.h"

#include <algorithm>

namespace pdctl::engine {

TextStream::TextStream(const Tokenizer* tokenizer, bool detokenize, bool skip_special_tokens,
                       std::vector<std::string> stop, bool no_stop_trim)
    : stop_(std::move(stop)), no_stop_trim_(no_stop_trim) {
  if (tokenizer != nullptr && detokenize) decoder_.emplace(tokenizer->incremental_decoder(skip_special_tokens));
  // An empty stop string would match everywhere; submit() refuses it, this is belt and braces.
  std::erase_if(stop_, [](const std::string& s) { return s.empty(); });
}

std::optional<size_t> TextStream::push(int32_t id, std::string& out) {
  if (!decoder_) return std::nullopt;
  std::string piece = decoder_->push(id);
  if (piece.empty()) return std::nullopt;  // nothing new: nothing can have matched either
  pending_ += piece;
  // The earliest occurrence wins (on a tie, the first stop string listed).
  size_t best_pos = std::string::npos, best = 0;
  for (size_t i = 0; i < stop_.size(); ++i) {
    const size_t pos = pending_.find(stop_[i]);
    if (pos < best_pos) {
      best_pos = pos;
      best = i;
    }
  }
  if (best_pos != std::string::npos) {
    out.append(pending_, 0, no_stop_trim_ ? pending_.size() : best_pos);
    pending_.clear();
    return best;
  }
  // Hold back the longest suffix that is a proper prefix of a stop string. Both ends fall
  // on UTF-8 character boundaries: a stop string starts with a lead byte and pending_
  // ends with a whole character.
  size_t hold = 0;
  for (const std::string& s : stop_) {
    for (size_t k = std::min(pending_.size(), s.size() - 1); k > hold; --k) {
      if (pending_.compare(pending_.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
    }
  }
  out.append(pending_, 0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return std::nullopt;
}

void TextStream::finish(std::string& out) {
  if (!decoder_) return;
  pending_ += decoder_->finish();
  out += pending_;
  pending_.clear();
}

}  // namespace pdctl::engine

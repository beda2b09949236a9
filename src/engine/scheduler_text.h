#pragma once
// A request's output text on the engine thread: the incremental detokenizer plus stop
// strings. Text that could still be the start of a stop string is held back until it
// cannot; a matched stop string ends the text there (SGLang trims the output at the stop
// string and drops what follows; with no_stop_trim it keeps everything decoded so far).
//
// Why no occurrence can begin inside text already sent: the longest suffix of the text
// that is a prefix of some stop string is always held back, so any occurrence that ends
// in new text starts within the held-back part.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/tokenizer.h"

namespace pdctl::engine {

class TextStream {
 public:
  // No decoder (ids only) when `tokenizer` is null or `detokenize` is false; stop strings
  // then never match (submit() refuses them in that case).
  TextStream(const Tokenizer* tokenizer, bool detokenize, bool skip_special_tokens, std::vector<std::string> stop,
             bool no_stop_trim);

  bool enabled() const { return decoder_.has_value(); }
  // Adds one output token; appends the text that can be sent now to `out`. Returns the
  // index of the stop string it completed, if any: the text is final then.
  std::optional<size_t> push(int32_t id, std::string& out);
  // The end of the output for any other reason (length, stop token): appends what was
  // held back, untrimmed (SGLang trims only at a matched stop string).
  void finish(std::string& out);
  const std::vector<std::string>& stop() const { return stop_; }

 private:
  std::optional<IncrementalDecoder> decoder_;
  std::vector<std::string> stop_;
  bool no_stop_trim_;
  std::string pending_;  // decoded, not sent: a possible start of a stop string
};

}  // namespace pdctl::engine

#include "engine/scheduler_request.h"

#include <algorithm>

namespace pdctl::engine {

Request::Request(GenerateRequest r, OutputSink s, const Tokenizer* tokenizer, uint64_t default_seed)
    : req(std::move(r)),
      sink(std::move(s)),
      fill(std::move(req.input_ids)),
      prompt_len(static_cast<int>(fill.size())),
      sampler(req.sampling, default_seed, fill),
      text(tokenizer, req.detokenize, req.skip_special_tokens, req.stop, req.no_stop_trim) {
  // Spans into `fill` must survive a step, and growing it token by token should not
  // reallocate: it never holds more than this.
  fill.reserve(fill.size() + static_cast<size_t>(std::max(req.sampling.max_new_tokens, 0)));
}

}  // namespace pdctl::engine

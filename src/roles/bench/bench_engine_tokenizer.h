#pragma once
// The model's tokenizer (engine::Tokenizer) behind the serving benchmark's BenchTokenizer,
// and the choice of which tokenizer a run uses:
//   --tokenizer PATH                 that tokenizer (HF directory, tokenizer.json or GGUF)
//   --model-path PATH                the model's own tokenizer
//   --load-format dummy              the byte-level tokenizer of models without tokenizer
//                                    files (also when --model-path has none)
//   neither                          what the server says it runs (ServerTokenizerHints):
//                                    its tokenizer_path / model_path / model id when that
//                                    path exists here, the byte-level one for a dummy model
// sglang.bench_serving needs a tokenizer too (it loads --tokenizer or --model by name); when
// none can be found the run stops before sending anything and says what to pass.
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "engine/tokenizer.h"
#include "roles/bench/bench_options.h"
#include "roles/bench/bench_tokenizer.h"

namespace pdctl::roles {

class EngineBenchTokenizer final : public BenchTokenizer {
 public:
  explicit EngineBenchTokenizer(engine::Tokenizer tok);

  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const override;
  std::string decode(std::span<const int32_t> ids) const override;
  int32_t vocab_size() const override { return vocab_size_; }
  bool is_special(int32_t id) const override;
  int num_special_tokens_to_add() const override { return specials_to_add_; }

  const engine::Tokenizer& tokenizer() const { return tok_; }

 private:
  engine::Tokenizer tok_;
  int32_t vocab_size_ = 0;
  int specials_to_add_ = 0;
  bool byte_level_ = false;
};

// What the server told about its tokenizer (discovered before the run).
struct ServerTokenizerHints {
  std::vector<std::string> paths;  // tokenizer_path, model_path, model ids: tried in order
  bool dummy = false;              // it runs --load-format dummy
  std::string unreachable;         // why the server could not be asked (empty: it answered)
};

struct ChosenTokenizer {
  std::unique_ptr<EngineBenchTokenizer> tokenizer;
  std::string how;  // for the log: "stories260K.gguf (--model-path)", "byte-level (...)"
};

// Whether the flags name a tokenizer, so that the server need not be asked.
bool tokenizer_given(const BenchOptions& opts);

// The tokenizer for a run, by the rules above. `server` is used only when the flags name
// none (it may then be null: the server was not asked).
Result<ChosenTokenizer> choose_tokenizer(const BenchOptions& opts, const ServerTokenizerHints* server);

}  // namespace pdctl::roles

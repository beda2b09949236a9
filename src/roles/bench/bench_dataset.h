#pragma once
// The prompts of the serving benchmark (--dataset-name), built as sglang.bench_serving
// builds them (python/sglang/benchmark/datasets/: random.py, sharegpt.py,
// generated_shared_prefix.py, common.py), from the same random streams, so that a seed
// gives the same lengths and order. Nothing is downloaded: ShareGPT data comes from
// --dataset-path.
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "roles/bench/bench_options.h"
#include "roles/bench/bench_random.h"
#include "roles/bench/bench_record.h"
#include "roles/bench/bench_tokenizer.h"

namespace pdctl::roles {

struct DatasetRow {
  std::string prompt;               // the prompt text; empty when ids are sent
  std::vector<int32_t> prompt_ids;  // when not empty: sent as input_ids (sglang) or as a
                                    // token-array prompt (openai) instead of text
  int prompt_len = 0;               // prompt tokens, as sglang counts them
  int output_len = 0;               // new tokens to ask for
};

// sglang's compute_random_lens: n lengths uniform in [max(int(full_len * ratio), 1),
// full_len] from numpy's stream; all 0 when full_len <= 0.
std::vector<int> random_lengths(NumpyRandom& rng, int full_len, double range_ratio, size_t n);

// The first two turns of each ShareGPT conversation that has at least two, in file order.
struct ShareGptPair {
  std::string prompt;
  std::string completion;
};
// Reads a ShareGPT JSON file: an array of {"conversations" (or "conversation"):
// [{"value": text}, ...]}. A missing or malformed file is an error naming it.
Result<std::vector<ShareGptPair>> load_sharegpt(const std::string& path);

// All rows for --dataset-name, --num-prompts and the dataset's flags, drawing from `rng`
// (seeded with --seed) in sglang's order:
//   random      lengths from numpy; prompts cut from ShareGPT prompts repeated to length
//               (--dataset-path), or random non-special tokens when no file is given
//   random-ids  lengths from numpy; ids (offset + i + j) % vocab_size, sent as ids
//               (decoded to text for openai-chat)
//   sharegpt    shuffled pairs, lengths by the tokenizer, too short / too long dropped
//   generated-shared-prefix
//               --gsp-num-groups system prompts, each shared by --gsp-prompts-per-group
//               questions (--num-prompts is not used, as in sglang), shuffled
// Rows send text unless noted (or --tokenize-prompt). Fewer rows than asked for come back
// when a ShareGPT file has too few usable pairs; none at all is an error.
Result<std::vector<DatasetRow>> build_dataset(const BenchOptions& opts, Backend backend,
                                              const BenchTokenizer& tokenizer, BenchRng& rng);

// The warmup request's output length: min(row's, 32), as sglang.
int warmup_output_len(const DatasetRow& row);

}  // namespace pdctl::roles

#include "roles/bench/bench_dataset.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

namespace pdctl::roles {
namespace {

using Ids = std::vector<int32_t>;

// Which ids a generated prompt may use: the non-special part of the base vocabulary.
// (sglang's gen_prompt samples from all of get_vocab(), control tokens included; their
// text would turn into control tokens on the server.)
Ids prompt_vocabulary(const BenchTokenizer& tok) {
  Ids ids;
  ids.reserve(static_cast<size_t>(std::max(tok.vocab_size(), 0)));
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    if (!tok.is_special(id)) ids.push_back(id);
  }
  return ids;
}

// random.choices(population, k=n).
Ids choose_ids(PythonRandom& py, const Ids& population, int n) {
  Ids out(static_cast<size_t>(std::max(n, 0)));
  for (auto& id : out) id = population[py.choice_index(population.size())];
  return out;
}

// Fills a row with `ids` as ids or as their decoded text.
void set_prompt(DatasetRow& row, Ids ids, bool send_ids, const BenchTokenizer& tok) {
  if (send_ids) {
    row.prompt_ids = std::move(ids);
  } else {
    row.prompt = tok.decode(ids);
  }
}

Result<std::vector<DatasetRow>> sample_random(const BenchOptions& o, bool send_ids,
                                              const BenchTokenizer& tok, BenchRng& rng) {
  const size_t n = static_cast<size_t>(o.num_prompts);
  std::vector<int> input_lens = random_lengths(rng.np, o.random_input_len, o.random_range_ratio, n);
  std::vector<int> output_lens = random_lengths(rng.np, o.random_output_len, o.random_range_ratio, n);
  // Tokens of each prompt's own: the server adds BOS (and the like) to text, so text
  // leaves room for them and the prompt the server sees has the sampled length, which is
  // the length counted (as sglang counts it).
  std::vector<int> own_lens = input_lens;
  if (!send_ids) {
    const int specials = tok.num_special_tokens_to_add();
    for (int& len : own_lens) len = std::max(0, len - specials);
  }
  std::vector<DatasetRow> rows;
  rows.reserve(n);
  auto add = [&](size_t i, Ids ids) {
    DatasetRow row;
    row.prompt_len = input_lens[i];
    row.output_len = output_lens[i];
    set_prompt(row, std::move(ids), send_ids, tok);
    rows.push_back(std::move(row));
  };

  if (o.dataset_name == "random-ids") {
    const int32_t vocab = tok.vocab_size();
    if (vocab <= 0) return Status::invalid_argument("the tokenizer has an empty vocabulary");
    std::vector<int64_t> offsets(n);
    for (auto& off : offsets) off = rng.np.randint(0, vocab);
    for (size_t i = 0; i < n; ++i) {
      Ids ids(static_cast<size_t>(own_lens[i]));
      for (size_t j = 0; j < ids.size(); ++j) {
        ids[j] = static_cast<int32_t>((offsets[i] + static_cast<int64_t>(i + j)) % vocab);
      }
      add(i, std::move(ids));
    }
    return rows;
  }

  if (o.dataset_path.empty()) {
    // sglang downloads ShareGPT here; without a file, random non-special tokens.
    Ids population = prompt_vocabulary(tok);
    if (population.empty()) return Status::invalid_argument("the tokenizer has no ordinary tokens");
    for (size_t i = 0; i < n; ++i) add(i, choose_ids(rng.py, population, own_lens[i]));
    return rows;
  }

  PDCTL_ASSIGN_OR_RETURN(std::vector<ShareGptPair> pairs, load_sharegpt(o.dataset_path));
  rng.py.shuffle(pairs);
  for (const auto& pair : pairs) {
    const size_t i = rows.size();
    if (i == n) break;
    // Without special tokens: their text (e.g. "<|begin_of_text|>") would otherwise be
    // repeated inside the prompt; the counted length is the same.
    Ids ids = tok.encode(pair.prompt, /*add_special_tokens=*/false);
    if (ids.empty()) continue;
    const size_t want = static_cast<size_t>(own_lens[i]);
    Ids cut;
    cut.reserve(want);
    while (cut.size() < want) {
      size_t take = std::min(ids.size(), want - cut.size());
      cut.insert(cut.end(), ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(take));
    }
    add(i, std::move(cut));
  }
  if (rows.empty()) return Status::invalid_argument(o.dataset_path + ": no usable prompt in the file");
  return rows;
}

Result<std::vector<DatasetRow>> sample_sharegpt(const BenchOptions& o, const BenchTokenizer& tok,
                                                BenchRng& rng) {
  if (o.dataset_path.empty()) {
    return Status::invalid_argument(
        "--dataset-name sharegpt needs --dataset-path (a local ShareGPT JSON file; pdctl "
        "does not download it)");
  }
  PDCTL_ASSIGN_OR_RETURN(std::vector<ShareGptPair> pairs, load_sharegpt(o.dataset_path));
  rng.py.shuffle(pairs);
  std::vector<DatasetRow> rows;
  const size_t n = static_cast<size_t>(o.num_prompts);
  for (auto& pair : pairs) {
    if (rows.size() == n) break;
    int prompt_len = static_cast<int>(tok.encode(pair.prompt, true).size());
    int output_len = o.sharegpt_output_len
                         ? *o.sharegpt_output_len
                         : static_cast<int>(tok.encode(pair.completion, true).size());
    if (prompt_len < 2 || output_len < 2) continue;  // too short
    if (o.sharegpt_context_len && prompt_len + output_len > *o.sharegpt_context_len) continue;
    DatasetRow row;
    row.prompt = std::move(pair.prompt);
    row.prompt_len = prompt_len;
    row.output_len = output_len;
    rows.push_back(std::move(row));
  }
  if (rows.empty()) {
    return Status::invalid_argument(o.dataset_path + ": no conversation passes the length filters");
  }
  return rows;
}

Result<std::vector<DatasetRow>> sample_shared_prefix(const BenchOptions& o,
                                                     const BenchTokenizer& tok, BenchRng& rng) {
  const size_t groups = static_cast<size_t>(o.gsp_num_groups);
  const size_t per_group = static_cast<size_t>(o.gsp_prompts_per_group);
  const double ratio = o.gsp_range_ratio;
  std::vector<int> system_lens = random_lengths(rng.np, o.gsp_system_prompt_len, ratio, groups);
  std::vector<int> question_lens = random_lengths(rng.np, o.gsp_question_len, ratio, groups * per_group);
  std::vector<int> output_lens = random_lengths(rng.np, o.gsp_output_len, ratio, groups * per_group);

  Ids population = prompt_vocabulary(tok);
  if (population.empty()) return Status::invalid_argument("the tokenizer has no ordinary tokens");
  std::vector<std::string> system_prompts;
  system_prompts.reserve(groups);
  for (size_t g = 0; g < groups; ++g) {
    system_prompts.push_back(tok.decode(choose_ids(rng.py, population, system_lens[g])));
  }
  std::vector<std::string> questions;
  questions.reserve(groups * per_group);
  for (size_t q = 0; q < groups * per_group; ++q) {
    questions.push_back(tok.decode(choose_ids(rng.py, population, question_lens[q])));
  }
  std::vector<DatasetRow> rows;
  rows.reserve(groups * per_group);
  for (size_t g = 0; g < groups; ++g) {
    for (size_t p = 0; p < per_group; ++p) {
      const size_t q = g * per_group + p;
      DatasetRow row;
      row.prompt = system_prompts[g] + "\n\n" + questions[q];
      row.prompt_len = static_cast<int>(tok.encode(row.prompt, true).size());
      row.output_len = output_lens[q];
      rows.push_back(std::move(row));
    }
  }
  rng.py.shuffle(rows);
  return rows;
}

}  // namespace

std::vector<int> random_lengths(NumpyRandom& rng, int full_len, double range_ratio, size_t n) {
  std::vector<int> lens(n, 0);
  if (full_len <= 0) return lens;
  const int64_t low = std::max<int64_t>(static_cast<int64_t>(full_len * range_ratio), 1);
  for (int& len : lens) len = static_cast<int>(rng.randint(low, int64_t{full_len} + 1));
  return lens;
}

Result<std::vector<ShareGptPair>> load_sharegpt(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::not_found("cannot open the dataset file " + path);
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    return Status::corrupt(path + " is not valid JSON: " + e.what());
  }
  if (!doc.is_array()) return Status::corrupt(path + ": expected a JSON array of conversations");
  std::vector<ShareGptPair> pairs;
  pairs.reserve(doc.size());
  for (size_t i = 0; i < doc.size(); ++i) {
    const auto& entry = doc[i];
    auto where = [&](const char* what) {
      return Status::corrupt(path + ": entry " + std::to_string(i) + " " + what);
    };
    if (!entry.is_object()) return where("is not an object");
    const char* key = entry.contains("conversations") ? "conversations" : "conversation";
    if (!entry.contains(key)) continue;  // no turns: fewer than two
    const auto& turns = entry[key];
    if (!turns.is_array()) return where("has conversations that are not an array");
    if (turns.size() < 2) continue;
    for (int t = 0; t < 2; ++t) {
      if (!turns[t].is_object() || !turns[t].contains("value") || !turns[t]["value"].is_string()) {
        return where("has a turn without a string \"value\"");
      }
    }
    pairs.push_back({turns[0]["value"].get<std::string>(), turns[1]["value"].get<std::string>()});
  }
  return pairs;
}

Result<std::vector<DatasetRow>> build_dataset(const BenchOptions& opts, Backend backend,
                                              const BenchTokenizer& tokenizer, BenchRng& rng) {
  const std::string& name = opts.dataset_name;
  if (name == "random" || name == "random-ids") {
    const bool want_ids = name == "random-ids" || opts.tokenize_prompt;
    if (opts.tokenize_prompt && backend == Backend::kOpenAIChat) {
      return Status::invalid_argument("--tokenize-prompt does not work with --backend openai-chat");
    }
    return sample_random(opts, want_ids && backend != Backend::kOpenAIChat, tokenizer, rng);
  }
  if (opts.tokenize_prompt) {
    return Status::invalid_argument("--tokenize-prompt works only with the random datasets");
  }
  if (name == "sharegpt") return sample_sharegpt(opts, tokenizer, rng);
  if (name == "generated-shared-prefix") return sample_shared_prefix(opts, tokenizer, rng);
  return Status::invalid_argument("unknown dataset '" + name + "'");
}

int warmup_output_len(const DatasetRow& row) { return std::min(row.output_len, 32); }

}  // namespace pdctl::roles

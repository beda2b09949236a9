#include "roles/bench/bench_engine_tokenizer.h"

#include <filesystem>

namespace pdctl::roles {
namespace {

// The byte-level tokenizer's ids 3..258 are the bytes 0x00..0xFF.
constexpr int32_t kByteLevelFirstByte = 3;

bool exists(const std::string& path) {
  std::error_code ec;
  return !path.empty() && std::filesystem::exists(path, ec);
}

Result<ChosenTokenizer> load_from(const std::string& path, std::string how) {
  auto tok = engine::Tokenizer::load(path);
  if (!tok) return std::move(tok).status().with_context("loading the tokenizer " + path);
  return ChosenTokenizer{std::make_unique<EngineBenchTokenizer>(std::move(tok).value()),
                         path + " (" + std::move(how) + ")"};
}

ChosenTokenizer byte_level(std::string why) {
  return ChosenTokenizer{std::make_unique<EngineBenchTokenizer>(engine::Tokenizer::byte_level()),
                         "byte-level (" + std::move(why) + ")"};
}

}  // namespace

EngineBenchTokenizer::EngineBenchTokenizer(engine::Tokenizer tok)
    : tok_(std::move(tok)), byte_level_(tok_.source() == "byte-level") {
  // HF's tokenizer.vocab_size is the base vocabulary, without the added tokens that usually
  // sit above it (Llama 3's 256 control tokens from 128000); the engine counts them. Leave
  // out a trailing run of special ids so random-ids prompts draw from the same range.
  int32_t n = static_cast<int32_t>(tok_.vocab_size());
  while (n > 0 && tok_.is_special(n - 1)) --n;
  vocab_size_ = n;
  specials_to_add_ = static_cast<int>(tok_.encode("", true).size());
}

std::vector<int32_t> EngineBenchTokenizer::encode(std::string_view text, bool add_special_tokens) const {
  return tok_.encode(text, add_special_tokens);
}

std::string EngineBenchTokenizer::decode(std::span<const int32_t> ids) const {
  return tok_.decode(ids, /*skip_special_tokens=*/false);
}

bool EngineBenchTokenizer::is_special(int32_t id) const {
  if (tok_.is_special(id)) return true;
  if (!byte_level_) return false;
  // Random prompts from the byte-level vocabulary keep to printable ASCII: a random byte
  // above 0x7F is not UTF-8, decodes to U+FFFD and comes back as three tokens, so the
  // server would see a longer prompt than the one counted.
  const int32_t byte = id - kByteLevelFirstByte;
  return byte < 0x20 || byte > 0x7E;
}

bool tokenizer_given(const BenchOptions& opts) {
  return !opts.tokenizer.empty() || !opts.model_path.empty() || opts.load_format == "dummy";
}

Result<ChosenTokenizer> choose_tokenizer(const BenchOptions& opts, const ServerTokenizerHints* server) {
  const bool dummy = opts.load_format == "dummy";
  if (!opts.tokenizer.empty()) return load_from(opts.tokenizer, "--tokenizer");
  if (!opts.model_path.empty()) {
    if (exists(opts.model_path)) {
      auto chosen = load_from(opts.model_path, "--model-path");
      if (chosen || !dummy) return chosen;
      return byte_level("--load-format dummy; " + chosen.status().message());
    }
    if (dummy) return byte_level("--load-format dummy; --model-path " + opts.model_path + " is a preset name");
    return Status::not_found("--model-path " + opts.model_path +
                             ": no such file or directory (for a tokenizer elsewhere, pass --tokenizer)");
  }
  if (dummy) return byte_level("--load-format dummy");

  const std::string advice =
      "pass --tokenizer PATH or --model-path PATH (sglang.bench_serving needs a tokenizer too), or "
      "--load-format dummy for a server running a dummy model";
  if (server == nullptr || !server->unreachable.empty()) {
    return Status::invalid_argument("no tokenizer given, and the server could not tell its own (" +
                                    (server ? server->unreachable : std::string("not asked")) +
                                    "): " + advice);
  }
  std::string seen;
  for (const std::string& path : server->paths) {
    if (exists(path)) {
      auto chosen = load_from(path, "the server's model, found on this machine");
      if (chosen) return chosen;
      seen += (seen.empty() ? "" : ", ") + path + " (" + chosen.status().message() + ")";
    } else if (!path.empty()) {
      seen += (seen.empty() ? "" : ", ") + path + " (not on this machine)";
    }
  }
  if (server->dummy) return byte_level("the server runs a dummy model");
  return Status::not_found("no tokenizer given, and none of the server's model paths could be loaded" +
                           (seen.empty() ? std::string(" (it named none)") : ": " + seen) + "; " + advice);
}

}  // namespace pdctl::roles

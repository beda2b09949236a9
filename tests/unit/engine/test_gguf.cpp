#include <doctest/doctest.h>

#include <filesystem>
#include <random>

#include "common/mapped_file.h"
#include "engine/gguf.h"

using pdctl::MappedFile;
using pdctl::engine::GgufFile;

namespace {
const std::string kStories = std::string(PDCTL_SHARED_DIR) + "/models/stories260K.gguf";
bool have_stories() { return std::filesystem::exists(kStories); }
}  // namespace

TEST_CASE("gguf: stories260K metadata and tensors") {
  if (!have_stories()) {
    MESSAGE("skipped: " << kStories << " is absent");
    return;
  }
  auto f = GgufFile::open(kStories);
  REQUIRE_MESSAGE(f.has_value(), f.status().to_string());
  CHECK(f->version() == 3);
  CHECK(*f->get_string("general.architecture") == "llama");
  CHECK(*f->get_int("llama.embedding_length") == 64);
  CHECK(*f->get_int("llama.block_count") == 5);
  CHECK(*f->get_int("llama.attention.head_count") == 8);
  CHECK(*f->get_int("llama.attention.head_count_kv") == 4);
  CHECK(*f->get_string("tokenizer.ggml.model") == "llama");
  auto tokens = f->get_string_array("tokenizer.ggml.tokens");
  REQUIRE(tokens.has_value());
  CHECK(tokens->size() == 512);
  CHECK(f->get_float_array("tokenizer.ggml.scores")->size() == 512);
  CHECK(f->get_int_array("tokenizer.ggml.token_type")->size() == 512);
  const auto* emb = f->tensor("token_embd.weight");
  REQUIRE(emb != nullptr);
  CHECK(emb->dims == std::vector<int64_t>{64, 512});
  CHECK(emb->nbytes == 64 * 512 * 4);
  CHECK(f->tensor("no.such.tensor") == nullptr);
  // A wrong-typed getter names the key.
  auto bad = f->get_string("llama.block_count");
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.status().message().find("llama.block_count") != std::string::npos);
}

TEST_CASE("gguf: every truncation of a real file is an error, never a crash") {
  if (!have_stories()) {
    MESSAGE("skipped: " << kStories << " is absent");
    return;
  }
  auto map = MappedFile::open(kStories);
  REQUIRE(map.has_value());
  const auto bytes = map->bytes();
  // Every prefix through the header (dense), then a sample of prefixes through the data.
  auto full = GgufFile::parse(bytes, "full");
  REQUIRE(full.has_value());
  size_t header_end = bytes.size();
  for (const auto& t : full->tensors()) header_end = std::min<size_t>(header_end, t.data - bytes.data());
  for (size_t n = 0; n < bytes.size(); n += (n < header_end ? 1 : 997)) {
    auto r = GgufFile::parse(bytes.first(n), "cut");
    CHECK_FALSE(r.has_value());
  }
  auto last = GgufFile::parse(bytes.first(bytes.size() - 1), "cut");
  REQUIRE_FALSE(last.has_value());
  CHECK(last.status().message().find("runs past the end") != std::string::npos);
  CHECK(last.status().message().find("'") != std::string::npos);  // names the tensor
}

TEST_CASE("gguf: random bytes and corrupted headers are errors") {
  std::mt19937 rng(1234);
  std::vector<uint8_t> buf(4096);
  for (int iter = 0; iter < 2000; ++iter) {
    for (auto& b : buf) b = static_cast<uint8_t>(rng());
    if (iter % 2 == 0) {  // a valid magic and version so the parser goes deeper
      const uint8_t head[] = {'G', 'G', 'U', 'F', 3, 0, 0, 0};
      std::copy(std::begin(head), std::end(head), buf.begin());
      if (iter % 4 == 0) {  // small counts
        buf[8] = rng() % 4; std::fill(buf.begin() + 9, buf.begin() + 16, 0);
        buf[16] = rng() % 4; std::fill(buf.begin() + 17, buf.begin() + 24, 0);
      }
    }
    auto r = GgufFile::parse(std::span<const uint8_t>(buf.data(), rng() % buf.size()), "random");
    (void)r;  // any outcome but a crash, hang or sanitizer report is fine
  }
  if (!have_stories()) return;
  auto map = MappedFile::open(kStories);
  REQUIRE(map.has_value());
  std::vector<uint8_t> copy(map->bytes().begin(), map->bytes().end());
  for (int iter = 0; iter < 3000; ++iter) {
    std::vector<uint8_t> mutated = copy;
    const size_t header = 16 + 4096;  // flip bytes near the front, where the header is
    for (int k = 0; k < 4; ++k) mutated[rng() % header] = static_cast<uint8_t>(rng());
    auto r = GgufFile::parse(mutated, "mutated");
    (void)r;
  }
  copy[0] = 'X';
  auto bad_magic = GgufFile::parse(copy, "bad-magic.gguf");
  REQUIRE_FALSE(bad_magic.has_value());
  CHECK(bad_magic.status().message().find("not a GGUF file") != std::string::npos);
  CHECK(bad_magic.status().message().find("bad-magic.gguf") != std::string::npos);
}

TEST_CASE("gguf: a missing file is an I/O error naming it") {
  auto r = GgufFile::open("/nonexistent/model.gguf");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.status().message().find("/nonexistent/model.gguf") != std::string::npos);
}

// Broken model input is an error that names the file and the tensor or key, never a
// crash or a hang; bad forward inputs are refused before anything is written.
#include <doctest/doctest.h>

#include <cstring>
#include <fstream>
#include <random>

#include "common/mapped_file.h"
#include "engine/dummy_model.h"
#include "engine/gguf_writer.h"
#include "engine/model_writer.h"
#include "engine/safetensors.h"
#include "engine_test_util.h"

using namespace pdctl::engine;
using namespace pdctl::engine::test;

namespace {

ModelConfig small() {
  auto c = dummy_preset("tiny");
  REQUIRE(c.has_value());
  ModelConfig m = *c;
  m.hidden_size = 64;
  m.num_heads = 4;
  m.num_kv_heads = 2;
  m.head_dim = 16;
  m.intermediate_size = 128;
  m.vocab_size = 300;
  m.num_layers = 2;
  m.context_length = 64;
  return m;
}

std::vector<uint8_t> read_all(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}
void write_all(const std::string& p, const std::vector<uint8_t>& b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// The load error for `path`, which must fail; its message must name all of `names`.
void expect_error(const std::string& path, std::initializer_list<std::string> names, const std::string& format = "auto") {
  LoadOptions lo;
  lo.model_path = path;
  lo.load_format = format;
  auto m = load_model(lo);
  REQUIRE_FALSE(m.has_value());
  const std::string msg = m.status().message();
  INFO(msg);
  for (const auto& n : names) CHECK(msg.find(n) != std::string::npos);
}

}  // namespace

TEST_CASE("safetensors: truncations and random bytes are errors, never crashes") {
  const std::string path = shared_path("models/stories260K-hf/model.safetensors");
  if (!have_shared("models/stories260K-hf/model.safetensors")) {
    MESSAGE("skipped: " << path << " is absent");
    return;
  }
  auto map = pdctl::MappedFile::open(path);
  REQUIRE(map.has_value());
  const auto bytes = map->bytes();
  uint64_t hlen = 0;
  std::memcpy(&hlen, bytes.data(), 8);
  for (size_t n = 0; n < bytes.size(); n += (n < hlen + 8 ? 1 : 4099)) {
    auto r = SafetensorsFile::parse(bytes.first(n), "cut");
    CHECK_FALSE(r.has_value());
  }
  auto last = SafetensorsFile::parse(bytes.first(bytes.size() - 1), "cut.safetensors");
  REQUIRE_FALSE(last.has_value());
  CHECK(last.status().message().find("cut.safetensors: tensor '") != std::string::npos);
  CHECK(SafetensorsFile::parse(bytes, "whole").has_value());

  std::mt19937 rng(7);
  std::vector<uint8_t> buf(2048);
  for (int iter = 0; iter < 2000; ++iter) {
    for (auto& b : buf) b = static_cast<uint8_t>(rng());
    if (iter % 2 == 0) {  // a plausible header length, so the JSON parser sees the bytes
      const uint64_t n = rng() % 2040;
      std::memcpy(buf.data(), &n, 8);
      if (iter % 4 == 0) {  // and a JSON-looking start
        const char* s = "{\"a\":{\"dtype\":\"F32\",\"shape\":[";
        std::memcpy(buf.data() + 8, s, std::min<size_t>(std::strlen(s), n));
      }
    }
    auto r = SafetensorsFile::parse(buf, "random");
    CHECK_FALSE(r.has_value());
  }
}

TEST_CASE("model errors: GGUF files") {
  TempDir dir;
  auto m = make_random_model(small(), DType::kF16, 3);
  REQUIRE(m.has_value());
  const std::string good = dir / "good.gguf";
  REQUIRE(write_gguf_model(*m, good).is_ok());
  load_ok(good);
  const auto bytes = read_all(good);

  SUBCASE("wrong magic") {
    auto b = bytes;
    b[0] = 'X';
    write_all(dir / "magic.gguf", b);
    expect_error(dir / "magic.gguf", {"magic.gguf", "not a GGUF file"});
  }
  SUBCASE("truncated: the last tensor's bytes run past the end") {
    auto b = bytes;
    b.resize(b.size() - 100);
    write_all(dir / "cut.gguf", b);
    expect_error(dir / "cut.gguf", {"cut.gguf", "blk.1.ffn_down.weight", "past the end"});
  }
  SUBCASE("a tensor of an unsupported dtype") {
    auto b = bytes;
    const std::string name = "blk.0.attn_q.weight";
    auto it = std::search(b.begin(), b.end(), name.begin(), name.end());
    REQUIRE(it != b.end());
    const size_t type_at = static_cast<size_t>(it - b.begin()) + name.size() + 4 + 2 * 8;  // n_dims, 2 dims
    const uint32_t q4_0 = 2;
    std::memcpy(b.data() + type_at, &q4_0, 4);
    write_all(dir / "q4.gguf", b);
    expect_error(dir / "q4.gguf", {"q4.gguf", name, "Q4_0"});
  }
  SUBCASE("shapes that disagree with the metadata") {
    LoadedModel bad = make_random_model(small(), DType::kF16, 3).value();
    bad.config.intermediate_size = 96;  // the tensors keep 128
    REQUIRE(write_gguf_model(bad, dir / "shape.gguf").is_ok());
    expect_error(dir / "shape.gguf", {"shape.gguf", "blk.0.ffn_gate.weight", "[128, 64]", "[96, 64]"});
  }
  SUBCASE("unknown architecture, missing key") {
    GgufWriter w;
    w.add_string("general.architecture", "gpt2");
    REQUIRE(w.write(dir / "arch.gguf").is_ok());
    expect_error(dir / "arch.gguf", {"arch.gguf", "gpt2", "general.architecture"});
    GgufWriter w2;
    w2.add_string("general.architecture", "llama");
    REQUIRE(w2.write(dir / "nokey.gguf").is_ok());
    expect_error(dir / "nokey.gguf", {"nokey.gguf", "llama.embedding_length"});
  }
  SUBCASE("a missing tensor") {
    LoadedModel mm = make_random_model(small(), DType::kF16, 3).value();
    mm.weights.layers[1].wv.data = nullptr;  // the writer skips absent tensors
    REQUIRE(write_gguf_model(mm, dir / "missing.gguf").is_ok());
    expect_error(dir / "missing.gguf", {"missing.gguf", "blk.1.attn_v.weight", "missing"});
  }
  SUBCASE("not a file at all") {
    expect_error(dir / "nothing.gguf", {"nothing.gguf"});
    expect_error("no-such-preset", {"no-such-preset", "tiny"}, "dummy");
  }
}

TEST_CASE("model errors: Hugging Face directories") {
  TempDir dir;
  auto m = make_random_model(small(), DType::kBF16, 3);
  REQUIRE(m.has_value());
  REQUIRE(write_hf_model(*m, dir / "hf").is_ok());
  load_ok(dir / "hf");
  const std::string cfg_path = dir / "hf/config.json";
  const auto cfg = read_all(cfg_path);
  std::string text(cfg.begin(), cfg.end());

  SUBCASE("config.json: missing key, wrong type, unknown architecture, bad JSON") {
    auto edit = [&](const std::string& from, const std::string& to) {
      std::string t = text;
      auto at = t.find(from);
      REQUIRE(at != std::string::npos);
      t.replace(at, from.size(), to);
      write_all(cfg_path, std::vector<uint8_t>(t.begin(), t.end()));
    };
    edit("\"hidden_size\"", "\"hidden_sighs\"");
    expect_error(dir / "hf", {"config.json", "'hidden_size'"});
    edit("\"num_hidden_layers\": 2", "\"num_hidden_layers\": \"2\"");
    expect_error(dir / "hf", {"config.json", "'num_hidden_layers'"});
    edit("LlamaForCausalLM", "GPT2LMHeadModel");
    expect_error(dir / "hf", {"config.json", "GPT2LMHeadModel"});
    edit("{", "[");
    expect_error(dir / "hf", {"config.json"});
    edit("\"num_attention_heads\": 4", "\"num_attention_heads\": 3");
    expect_error(dir / "hf", {"config.json"});
  }
  SUBCASE("safetensors: truncated, a tensor missing, a shape that disagrees") {
    const std::string st = dir / "hf/model.safetensors";
    auto b = read_all(st);
    auto cut = b;
    cut.resize(cut.size() - 10);
    write_all(st, cut);
    expect_error(dir / "hf", {"model.safetensors", "tensor '", "past the end"});

    write_all(st, b);
    auto f = SafetensorsFile::open(st);
    REQUIRE(f.has_value());
    std::vector<SafetensorsEntry> keep, drop;
    for (const auto& [name, t] : f->tensors()) {
      int64_t n = 1;
      for (int64_t d : t.shape) n *= d;
      std::vector<int64_t> shape = t.shape;
      if (name == "model.layers.0.mlp.gate_proj.weight") shape = {shape[1], shape[0]};
      const SafetensorsEntry e{name, *t.dtype, shape, {static_cast<const uint8_t*>(t.data), static_cast<size_t>(n * 2)}};
      keep.push_back(e);
      if (name != "model.layers.1.mlp.up_proj.weight") drop.push_back({name, *t.dtype, t.shape, e.bytes});
    }
    const std::string st2 = dir / "other.safetensors";
    REQUIRE(write_safetensors(st2, keep).is_ok());
    std::filesystem::copy_file(st2, st, std::filesystem::copy_options::overwrite_existing);
    expect_error(dir / "hf", {"model.safetensors: tensor 'model.layers.0.mlp.gate_proj.weight'", "shape [64, 128]",
                              "requires [128, 64]"});
    write_all(st, b);
    f = SafetensorsFile::open(st);  // the views above point into the old mapping: reread
    REQUIRE(f.has_value());
    drop.clear();
    for (const auto& [name, t] : f->tensors()) {
      if (name == "model.layers.1.mlp.up_proj.weight") continue;
      int64_t n = 1;
      for (int64_t d : t.shape) n *= d;
      drop.push_back({name, *t.dtype, t.shape, {static_cast<const uint8_t*>(t.data), static_cast<size_t>(n * 2)}});
    }
    REQUIRE(write_safetensors(st2, drop).is_ok());
    std::filesystem::copy_file(st2, st, std::filesystem::copy_options::overwrite_existing);
    expect_error(dir / "hf", {"hf", "model.layers.1.mlp.up_proj.weight", "missing"});
  }
  SUBCASE("a sharded index naming a missing shard") {
    std::filesystem::remove(dir / "hf/model.safetensors");
    expect_error(dir / "hf", {"model.safetensors"});
    write_all(dir / "hf/model.safetensors.index.json",
              std::vector<uint8_t>{'{', '"', 'w', 'e', 'i', 'g', 'h', 't', '_', 'm', 'a', 'p', '"', ':', '{', '"', 'a',
                                   '"', ':', '"', 's', '1', '"', '}', '}'});
    expect_error(dir / "hf", {"s1"});
  }
}

TEST_CASE("forward: bad inputs are refused; the layer observer sees each layer's KV written") {
  auto r = runner_for(make_random_model(small(), DType::kF32, 3).value());
  auto& pool = r->kv_pool();
  auto pages = pool.allocate(2);  // 16 tokens with page size 8
  REQUIRE(pages.has_value());
  std::vector<int32_t> toks = {1, 5, 6, 7};
  SequenceInput s{toks, 0, *pages, false};
  ForwardOutput out;

  std::vector<int32_t> bad = {1, 300};
  SequenceInput sb{bad, 0, *pages, false};
  CHECK(r->forward(std::span(&sb, 1), out).code() == pdctl::Errc::kInvalidArgument);
  SequenceInput sp{toks, 14, *pages, false};  // needs 3 pages
  CHECK(r->forward(std::span(&sp, 1), out).code() == pdctl::Errc::kInvalidArgument);
  SequenceInput sc{toks, 62, *pages, false};  // past the context of 64
  CHECK(r->forward(std::span(&sc, 1), out).code() == pdctl::Errc::kOutOfRange);
  std::vector<int32_t> unknown = {99};
  SequenceInput su{toks, 0, unknown, false};
  CHECK(r->forward(std::span(&su, 1), out).code() == pdctl::Errc::kInvalidArgument);
  auto spare = pool.allocate(1);
  REQUIRE(spare.has_value());
  CHECK(pool.release(*spare).is_ok());
  SequenceInput sf{toks, 0, *spare, false};  // a page that is free again
  CHECK(r->forward(std::span(&sf, 1), out).code() == pdctl::Errc::kInvalidArgument);

  const auto& g = pool.geometry();
  auto block_nonzero = [&](int layer) {
    const uint8_t* b = pool.block(layer, pdctl::kv::KvPart::kK, (*pages)[0]);
    for (size_t i = 0; i < g.block_bytes(); ++i) {
      if (b[i]) return true;
    }
    return false;
  };
  std::vector<int> seen;
  pdctl::Status st = r->forward(std::span(&s, 1), out, [&](int layer) {
    CHECK(block_nonzero(layer));
    if (layer + 1 < g.num_layers) CHECK_FALSE(block_nonzero(layer + 1));
    seen.push_back(layer);
  });
  REQUIRE(st.is_ok());
  CHECK(seen == std::vector<int>{0, 1});
  CHECK(out.logits.size() == 300);
  CHECK(pool.release(*pages).is_ok());
}

TEST_CASE("forward: all_logits rows equal the last-token logits of each prefix") {
  auto r = runner_for(make_random_model(small(), DType::kF32, 4).value());
  auto& pool = r->kv_pool();
  auto pages = pool.allocate(2);
  REQUIRE(pages.has_value());
  std::vector<int32_t> toks = {1, 50, 60, 70, 80, 90};
  ForwardOutput all;
  SequenceInput s{toks, 0, *pages, true};
  REQUIRE(r->forward(std::span(&s, 1), all).is_ok());
  CHECK(all.num_rows[0] == 6);
  for (int32_t i = 0; i < 6; ++i) {
    ForwardOutput one;
    SequenceInput p{std::span<const int32_t>(toks).first(static_cast<size_t>(i) + 1), 0, *pages, false};
    REQUIRE(r->forward(std::span(&p, 1), one).is_ok());
    auto a = all.row(0, i), b = one.last(0);
    double d = 0;
    for (size_t k = 0; k < a.size(); ++k) d = std::max(d, static_cast<double>(std::fabs(a[k] - b[k])));
    CHECK(d < 1e-4);
  }
  CHECK(pool.release(*pages).is_ok());
}

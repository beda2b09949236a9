// What the serving benchmark learns from the server (model name, tokenizer, report info)
// and how it picks its tokenizer.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include "roles/bench/bench_engine_tokenizer.h"
#include "roles/bench/bench_server_query.h"

using namespace pdctl::roles;

TEST_CASE("--base-url: endpoint and path prefix") {
  auto t = server_target("http://localhost:8080/api/");
  REQUIRE(t.has_value());
  CHECK(t->endpoint.host == "localhost");
  CHECK(t->endpoint.port == 8080);
  CHECK(t->prefix == "/api");
  auto plain = server_target("http://127.0.0.1:30000");
  REQUIRE(plain.has_value());
  CHECK(plain->prefix.empty());
  CHECK_FALSE(server_target("https://example.com").has_value());
}

TEST_CASE("/v1/models: the first id is the model, as sglang takes it") {
  auto id = parse_first_model_id(R"({"object":"list","data":[{"id":"m1","root":"/models/m1"},{"id":"m2"}]})");
  REQUIRE(id.has_value());
  CHECK(*id == "m1");
  CHECK_FALSE(parse_first_model_id(R"({"data":[]})").has_value());
  CHECK_FALSE(parse_first_model_id("not json").has_value());
  CHECK_FALSE(parse_first_model_id(R"({"models":["x"]})").has_value());
}

TEST_CASE("tokenizer hints: paths in order, without repeats; a PD router's decode worker") {
  ServerTokenizerHints h;
  add_tokenizer_hints(R"({"model_path":"/m/a","tokenizer_path":"/t/a","load_format":"auto"})", h);
  add_tokenizer_hints(R"({"decode":[{"model_path":"/m/b","load_format":"dummy"}],"prefill":[]})", h);
  add_model_list_hints(R"({"data":[{"id":"name","root":"/m/a"},{"id":"/m/c"}]})", h);
  add_tokenizer_hints("<html>not found</html>", h);
  CHECK(h.paths == std::vector<std::string>{"/t/a", "/m/a", "/m/b", "name", "/m/c"});
  CHECK(h.dummy);
}

TEST_CASE("server info for the report: kept as JSON, accept length read when present") {
  ServerInfo plain = parse_server_info(R"({"model_path":"x","internal_states":[{"x":1}]})");
  CHECK(plain.json == R"({"model_path":"x","internal_states":[{"x":1}]})");
  CHECK_FALSE(plain.accept_length.has_value());
  ServerInfo spec = parse_server_info(
      R"({"decode":[{"internal_states":[{"avg_spec_accept_length":2.5}]}],"prefill":[{}]})");
  CHECK(spec.json == R"({"internal_states":[{"avg_spec_accept_length":2.5}]})");
  CHECK(spec.accept_length == doctest::Approx(2.5));
  CHECK(parse_server_info("404 page not found").json.empty());
}

TEST_CASE("choosing the tokenizer: flags first, then the server, else a clear error") {
  const std::string shared = PDCTL_SHARED_DIR;
  const std::string gguf = shared + "/models/stories260K.gguf";
  const bool have_model = std::filesystem::exists(gguf);
  BenchOptions o;

  SUBCASE("--load-format dummy: byte-level, printable ASCII for random prompts") {
    o.load_format = "dummy";
    auto t = choose_tokenizer(o, nullptr);
    REQUIRE(t.has_value());
    CHECK(t->how.starts_with("byte-level"));
    const BenchTokenizer& tok = *t->tokenizer;
    CHECK(tok.vocab_size() == 259);
    CHECK(tok.num_special_tokens_to_add() == 1);  // BOS
    CHECK(tok.is_special(1));
    CHECK_FALSE(tok.is_special(3 + 'a'));
    CHECK(tok.is_special(3 + 0x80));  // not UTF-8 on its own
    CHECK(tok.is_special(3 + '\0'));
    CHECK(tok.encode("ab", false).size() == 2);
  }
  SUBCASE("a dummy preset name for --model-path") {
    o.load_format = "dummy";
    o.model_path = "llama-tiny-preset";
    auto t = choose_tokenizer(o, nullptr);
    REQUIRE(t.has_value());
    CHECK(t->how.find("preset") != std::string::npos);
  }
  SUBCASE("a missing --model-path or --tokenizer is an error naming it") {
    o.model_path = "/nonexistent/model.gguf";
    auto t = choose_tokenizer(o, nullptr);
    REQUIRE_FALSE(t.has_value());
    CHECK(t.status().message().find("/nonexistent/model.gguf") != std::string::npos);
    o.tokenizer = "/nonexistent/tok.json";
    CHECK_FALSE(choose_tokenizer(o, nullptr).has_value());
  }
  SUBCASE("nothing given, server unreachable: says what to pass") {
    ServerTokenizerHints h;
    h.unreachable = "connection refused";
    auto t = choose_tokenizer(o, &h);
    REQUIRE_FALSE(t.has_value());
    CHECK(t.status().message().find("--tokenizer") != std::string::npos);
    CHECK(t.status().message().find("connection refused") != std::string::npos);
  }
  SUBCASE("nothing given, the server names paths that are not here") {
    ServerTokenizerHints h;
    h.paths = {"/srv/models/llama", "llama"};
    auto t = choose_tokenizer(o, &h);
    REQUIRE_FALSE(t.has_value());
    CHECK(t.status().message().find("/srv/models/llama (not on this machine)") != std::string::npos);
    h.dummy = true;
    auto dummy = choose_tokenizer(o, &h);
    REQUIRE(dummy.has_value());
    CHECK(dummy->how == "byte-level (the server runs a dummy model)");
  }
  SUBCASE("the server's model path, found here") {
    if (!have_model) return;
    ServerTokenizerHints h;
    h.paths = {"/srv/elsewhere", gguf};
    auto t = choose_tokenizer(o, &h);
    REQUIRE(t.has_value());
    CHECK(t->how.starts_with(gguf));
    // stories260K: 512 ids, BOS added, ids 0..2 control tokens
    CHECK(t->tokenizer->vocab_size() == 512);
    CHECK(t->tokenizer->num_special_tokens_to_add() == 1);
  }
  SUBCASE("--model-path of a real model") {
    if (!have_model) return;
    o.model_path = gguf;
    auto t = choose_tokenizer(o, nullptr);
    REQUIRE(t.has_value());
    CHECK(t->how == gguf + " (--model-path)");
  }
}

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "roles/cli.h"

namespace fs = std::filesystem;
using pdctl::roles::Cli;

namespace {

// A config file in a fresh temporary directory, removed at scope exit.
struct TempToml {
  fs::path dir;
  fs::path path;
  explicit TempToml(const std::string& text) {
    char tmpl[] = "/tmp/pdctl-cli-XXXXXX";
    dir = mkdtemp(tmpl);
    path = dir / "config.toml";
    std::ofstream(path) << text;
  }
  ~TempToml() { fs::remove_all(dir); }
};

struct Run {
  std::optional<int> rc;
  std::string out, err;
};

Run parse(Cli& cli, std::vector<std::string> args) {
  args.insert(args.begin(), "pdctl");
  std::ostringstream out, err;
  Run r;
  r.rc = cli.parse(args, out, err);
  r.out = out.str();
  r.err = err.str();
  return r;
}

}  // namespace

TEST_CASE("defaults < config file < command-line flag") {
  TempToml cfg(
      "[serve]\n"
      "port = 31000\n"
      "page-size = 32\n"
      "model_path = \"/models/a\"\n"
      "[router]\n"
      "policy = \"round_robin\"\n");
  SUBCASE("the file overrides the default") {
    Cli cli;
    auto r = parse(cli, {"--config", cfg.path.string(), "serve"});
    REQUIRE_FALSE(r.rc.has_value());
    CHECK(cli.role() == "serve");
    CHECK(cli.serve.port == 31000);
    CHECK(cli.serve.page_size == 32);
    CHECK(cli.serve.model_path == "/models/a");
    CHECK(cli.serve.chunked_prefill_size == 8192);  // untouched default
  }
  SUBCASE("a flag overrides the file, before or after the role") {
    Cli cli;
    auto r = parse(cli, {"serve", "--port", "32000", "--config", cfg.path.string()});
    REQUIRE_FALSE(r.rc.has_value());
    CHECK(cli.serve.port == 32000);
    CHECK(cli.serve.page_size == 32);
  }
  SUBCASE("only the role's own table applies") {
    Cli cli;
    auto r = parse(cli, {"-c", cfg.path.string(), "router"});
    REQUIRE_FALSE(r.rc.has_value());
    CHECK(cli.router.policy == "round_robin");
    CHECK(cli.router.port == 30000);
  }
}

TEST_CASE("a misspelled key names the key and its line, exit 2") {
  TempToml cfg("[serve]\nport = 31000\n\nchunked-prefil-size = 64\n");
  Cli cli;
  auto r = parse(cli, {"serve", "--config", cfg.path.string()});
  REQUIRE(r.rc.has_value());
  CHECK(*r.rc == 2);
  CHECK(r.err.find("chunked-prefil-size") != std::string::npos);
  CHECK(r.err.find("config.toml:4") != std::string::npos);
  CHECK(r.err.find("did you mean 'chunked-prefill-size'") != std::string::npos);
}

TEST_CASE("a wrong type or an out-of-range value names key and line, exit 2") {
  SUBCASE("string for an integer") {
    TempToml cfg("[decode]\nport = \"8000\"\n");
    Cli cli;
    auto r = parse(cli, {"decode", "-c", cfg.path.string()});
    REQUIRE(r.rc == 2);
    CHECK(r.err.find("config.toml:2") != std::string::npos);
    CHECK(r.err.find("'port' must be an integer") != std::string::npos);
  }
  SUBCASE("out of range") {
    TempToml cfg("[prefill]\n\npage-size = 0\n");
    Cli cli;
    auto r = parse(cli, {"prefill", "-c", cfg.path.string()});
    REQUIRE(r.rc == 2);
    CHECK(r.err.find("config.toml:3") != std::string::npos);
    CHECK(r.err.find("page-size") != std::string::npos);
  }
  SUBCASE("not one of the choices") {
    TempToml cfg("[router]\npolicy = \"fastest\"\n");
    Cli cli;
    auto r = parse(cli, {"router", "-c", cfg.path.string()});
    REQUIRE(r.rc == 2);
    CHECK(r.err.find("config.toml:2") != std::string::npos);
  }
  SUBCASE("a misspelled section") {
    TempToml cfg("[routr]\nport = 1\n");
    Cli cli;
    auto r = parse(cli, {"router", "-c", cfg.path.string()});
    REQUIRE(r.rc == 2);
    CHECK(r.err.find("[routr]") != std::string::npos);
  }
  SUBCASE("a TOML syntax error") {
    TempToml cfg("[router]\nport = = 1\n");
    Cli cli;
    auto r = parse(cli, {"router", "-c", cfg.path.string()});
    REQUIRE(r.rc == 2);
    CHECK(r.err.find("config.toml:2") != std::string::npos);
  }
}

TEST_CASE("an unknown flag is exit 2 with CLI11's message") {
  Cli cli;
  auto r = parse(cli, {"serve", "--no-such-flag", "1"});
  REQUIRE(r.rc == 2);
  CHECK(r.err.find("--no-such-flag") != std::string::npos);
}

TEST_CASE("--prefill URL [BOOTSTRAP_PORT] ... --decode URL") {
  Cli cli;
  auto r = parse(cli, {"router", "--pd-disaggregation", "--prefill", "http://a:30001", "8998",
                       "http://b:30002", "--decode", "http://c:30011", "--prefill",
                       "http://d:30003", "none", "--decode", "http://e:30012"});
  REQUIRE_FALSE(r.rc.has_value());
  const auto& p = cli.router.prefill;
  REQUIRE(p.size() == 3);
  CHECK(p[0].url == "http://a:30001");
  CHECK(p[0].bootstrap_port == 8998);
  CHECK(p[1].url == "http://b:30002");
  CHECK_FALSE(p[1].bootstrap_port.has_value());
  CHECK(p[2].url == "http://d:30003");
  CHECK_FALSE(p[2].bootstrap_port.has_value());
  CHECK(cli.router.decode_urls == std::vector<std::string>{"http://c:30011", "http://e:30012"});
}

TEST_CASE("bad --prefill lists are refused") {
  using pdctl::roles::parse_prefill_endpoints;
  CHECK_FALSE(parse_prefill_endpoints({"8998"}).has_value());
  CHECK_FALSE(parse_prefill_endpoints({"http://a:1", "1", "2"}).has_value());
  CHECK_FALSE(parse_prefill_endpoints({"http://a:1", "70000"}).has_value());
  CHECK_FALSE(parse_prefill_endpoints({"a:1"}).has_value());
  Cli cli;
  auto r = parse(cli, {"router", "--prefill", "http://a:1", "--decode", "http://b:2"});
  CHECK(r.rc == 2);  // PD flags without --pd-disaggregation
}

TEST_CASE("--print-config prints the effective configuration as TOML") {
  TempToml cfg("[router]\nworker-urls = [\"http://a:1\", \"http://b:2\"]\ncache-threshold = 1\n");
  Cli cli;
  auto r = parse(cli, {"router", "-c", cfg.path.string(), "--print-config", "--port", "31234"});
  REQUIRE(r.rc == 0);
  CHECK(r.out.find("[router]") != std::string::npos);
  CHECK(r.out.find("port = 31234") != std::string::npos);
  CHECK(r.out.find("'http://b:2'") != std::string::npos);
  CHECK(r.out.find("cache-threshold = 1.0") != std::string::npos);

  // What it prints reads back as the same configuration.
  TempToml again(r.out);
  Cli cli2;
  auto r2 = parse(cli2, {"router", "-c", again.path.string()});
  REQUIRE_FALSE(r2.rc.has_value());
  CHECK(cli2.router.port == 31234);
  CHECK(cli2.router.worker_urls == std::vector<std::string>{"http://a:1", "http://b:2"});
  CHECK(cli2.router.cache_threshold == 1.0);
}

TEST_CASE("help lists the six roles; --version answers") {
  Cli cli;
  auto r = parse(cli, {"--help"});
  REQUIRE(r.rc == 0);
  for (const char* role : {"router", "prefill", "decode", "serve", "bench", "up"}) {
    CHECK(r.out.find(role) != std::string::npos);
  }
  Cli cli2;
  auto v = parse(cli2, {"--version"});
  REQUIRE(v.rc == 0);
  CHECK(v.out.find("pdctl") != std::string::npos);
}

// `pdctl up`: how a deployment file becomes the children's command lines, and what is
// refused before anything starts.
#include <doctest/doctest.h>

#include <algorithm>
#include <sstream>

#include "roles/cli.h"
#include "roles/up/line_prefixer.h"
#include "roles/up/up_plan.h"

using namespace pdctl;
using namespace pdctl::roles::up;

namespace {

Result<UpPlan> plan_of(const std::string& text) {
  toml::table root = toml::parse(text, std::string_view("deploy.toml"));
  return make_up_plan(root, "deploy.toml");
}

const ChildSpec& child(const UpPlan& plan, const std::string& name) {
  auto it = std::find_if(plan.children.begin(), plan.children.end(), [&](const ChildSpec& c) { return c.name == name; });
  REQUIRE(it != plan.children.end());
  return *it;
}

bool has_args(const std::vector<std::string>& args, const std::vector<std::string>& seq) {
  return std::search(args.begin(), args.end(), seq.begin(), seq.end()) != args.end();
}

// The child's own command line parser reads back what up passes.
void parse_as_child(pdctl::roles::Cli& cli, const ChildSpec& spec) {
  std::vector<std::string> argv = {"pdctl"};
  argv.insert(argv.end(), spec.args.begin(), spec.args.end());
  std::ostringstream out, err;
  auto rc = cli.parse(argv, out, err);
  INFO(err.str());
  REQUIRE_FALSE(rc.has_value());
}

const char* kPd = R"(
[router]
port = 31000
policy = "round_robin"

[[prefill]]
port = 31001
disaggregation-bootstrap-port = 31998
model-path = "tiny"
load-format = "dummy"
mem-fraction-static = 0.25
disable-radix-cache = true
cpus = "0-1"

[[decode]]
name = "dec"
port = 31002
model-path = "tiny"
load-format = "dummy"
threads = 2
log-level = "debug"
)";

}  // namespace

TEST_CASE("a PD deployment: workers first, router last, with the workers' URLs and bootstrap ports") {
  auto plan = plan_of(kPd);
  REQUIRE_MESSAGE(plan.has_value(), plan.status().message());
  REQUIRE(plan->children.size() == 3);
  CHECK(plan->children[0].name == "prefill-0");
  CHECK(plan->children[1].name == "dec");
  CHECK(plan->children[2].name == "router");
  CHECK(plan->entry_url == "http://127.0.0.1:31000");

  const ChildSpec& r = child(*plan, "router");
  CHECK(r.stop_stage == StopStage::kRouter);
  CHECK(r.health_url == "http://127.0.0.1:31000/health");
  CHECK(has_args(r.args, {"--prefill", "http://127.0.0.1:31001", "31998"}));
  CHECK(has_args(r.args, {"--decode", "http://127.0.0.1:31002"}));

  const ChildSpec& p = child(*plan, "prefill-0");
  CHECK(p.stop_stage == StopStage::kPrefillAndServe);
  CHECK(p.cpus == std::vector<int>{0, 1});
  CHECK(p.args.front() == "prefill");
  // `up`'s own keys are not passed on.
  for (const auto& a : p.args) CHECK(a.rfind("--cpus", 0) != 0);

  const ChildSpec& d = child(*plan, "dec");
  CHECK(d.stop_stage == StopStage::kDecode);
  CHECK(has_args(d.args, {"--log-level", "debug", "decode"}));
}

TEST_CASE("every child's command line parses back to the values of its table") {
  auto plan = plan_of(kPd);
  REQUIRE(plan.has_value());
  {
    pdctl::roles::Cli cli;
    parse_as_child(cli, child(*plan, "prefill-0"));
    CHECK(cli.role() == "prefill");
    CHECK(cli.prefill.port == 31001);
    CHECK(cli.prefill.disaggregation_bootstrap_port == 31998);
    CHECK(cli.prefill.mem_fraction_static == doctest::Approx(0.25));
    CHECK(cli.prefill.disable_radix_cache);
    CHECK(cli.prefill.load_format == "dummy");
  }
  {
    pdctl::roles::Cli cli;
    parse_as_child(cli, child(*plan, "dec"));
    CHECK(cli.role() == "decode");
    CHECK(cli.log_level() == "debug");
    CHECK(cli.decode.threads == 2);
  }
  {
    pdctl::roles::Cli cli;
    parse_as_child(cli, child(*plan, "router"));
    CHECK(cli.router.pd_disaggregation);
    CHECK(cli.router.port == 31000);
    CHECK(cli.router.policy == "round_robin");
    REQUIRE(cli.router.prefill.size() == 1);
    CHECK(cli.router.prefill[0].url == "http://127.0.0.1:31001");
    CHECK(cli.router.prefill[0].bootstrap_port == 31998);
    CHECK(cli.router.decode_urls == std::vector<std::string>{"http://127.0.0.1:31002"});
  }
}

TEST_CASE("serve workers behind a regular router; false booleans pass through") {
  auto plan = plan_of(R"(
[router]
port = 32000
[[serve]]
host = "0.0.0.0"
port = 32001
model-path = "tiny"
disable-radix-cache = false
[[serve]]
port = 32002
model-path = "tiny"
)");
  REQUIRE_MESSAGE(plan.has_value(), plan.status().message());
  const ChildSpec& r = child(*plan, "router");
  // 0.0.0.0 listens everywhere; the router and the health check connect over loopback.
  CHECK(has_args(r.args, {"--worker-urls", "http://127.0.0.1:32001", "http://127.0.0.1:32002"}));
  CHECK(child(*plan, "serve-0").health_url == "http://127.0.0.1:32001/health");
  pdctl::roles::Cli cli;
  parse_as_child(cli, child(*plan, "serve-0"));
  CHECK_FALSE(cli.serve.disable_radix_cache);
  CHECK(cli.serve.host == "0.0.0.0");
}

TEST_CASE("a router that names its workers keeps them") {
  auto plan = plan_of(R"(
[router]
port = 33000
worker-urls = ["http://10.0.0.5:30000"]
[[serve]]
port = 33001
model-path = "tiny"
)");
  REQUIRE_MESSAGE(plan.has_value(), plan.status().message());
  const ChildSpec& r = child(*plan, "router");
  CHECK(has_args(r.args, {"--worker-urls", "http://10.0.0.5:30000"}));
  CHECK(std::count(r.args.begin(), r.args.end(), "--worker-urls") == 1);
}

TEST_CASE("two entries on one port are refused, naming both") {
  auto plan = plan_of(R"(
[router]
port = 34000
[[serve]]
port = 34001
model-path = "tiny"
[[serve]]
name = "second"
port = 34001
model-path = "tiny"
)");
  REQUIRE_FALSE(plan.has_value());
  const std::string& m = plan.status().message();
  CHECK(m.find("port 34001") != std::string::npos);
  CHECK(m.find("serve-0 (deploy.toml:4)") != std::string::npos);
  CHECK(m.find("second (deploy.toml:7)") != std::string::npos);
}

TEST_CASE("a worker on the router's default port is refused") {
  auto plan = plan_of("[router]\n[[serve]]\nmodel-path = \"tiny\"\n");  // both default to 30000
  REQUIRE_FALSE(plan.has_value());
  CHECK(plan.status().message().find("port 30000") != std::string::npos);
}

TEST_CASE("two prefill workers on the default bootstrap port are refused") {
  auto plan = plan_of(R"(
[[prefill]]
port = 35001
[[prefill]]
port = 35002
)");
  REQUIRE_FALSE(plan.has_value());
  const std::string& m = plan.status().message();
  CHECK(m.find("port 8998") != std::string::npos);
  CHECK(m.find("prefill-0") != std::string::npos);
  CHECK(m.find("prefill-1") != std::string::npos);
  CHECK(m.find("disaggregation-bootstrap-port") != std::string::npos);
}

TEST_CASE("a bootstrap port equal to another entry's HTTP port is refused") {
  auto plan = plan_of(R"(
[[prefill]]
port = 36001
disaggregation-bootstrap-port = 36002
[[decode]]
port = 36002
)");
  REQUIRE_FALSE(plan.has_value());
  CHECK(plan.status().message().find("port 36002") != std::string::npos);
}

TEST_CASE("bad files are refused with file:line") {
  SUBCASE("unknown key") {
    auto plan = plan_of("[[decode]]\nport = 1234\nmodel-pth = \"x\"\n");
    REQUIRE_FALSE(plan.has_value());
    CHECK(plan.status().message().find("deploy.toml:3") != std::string::npos);
    CHECK(plan.status().message().find("model-path") != std::string::npos);  // the hint
  }
  SUBCASE("wrong type") {
    auto plan = plan_of("[[serve]]\nport = \"x\"\n");
    REQUIRE_FALSE(plan.has_value());
    CHECK(plan.status().message().find("deploy.toml:2") != std::string::npos);
  }
  SUBCASE("bad CPU list") {
    auto plan = plan_of("[[serve]]\ncpus = \"3-1\"\n");
    REQUIRE_FALSE(plan.has_value());
    CHECK(plan.status().message().find("cpus") != std::string::npos);
  }
  SUBCASE("unknown section") {
    auto plan = plan_of("[prefil]\nport = 1\n");
    REQUIRE_FALSE(plan.has_value());
    CHECK(plan.status().message().find("[prefil]") != std::string::npos);
  }
  SUBCASE("nothing to start") {
    auto plan = plan_of("[bench]\nnum-prompts = 3\n");
    REQUIRE_FALSE(plan.has_value());
    CHECK(plan.status().message().find("nothing to start") != std::string::npos);
  }
  SUBCASE("two entries with one name") {
    auto plan = plan_of("[[serve]]\nname = \"a\"\nport = 1001\n[[serve]]\nname = \"a\"\nport = 1002\n");
    REQUIRE_FALSE(plan.has_value());
    CHECK(plan.status().message().find("named 'a'") != std::string::npos);
  }
}

TEST_CASE("CPU lists") {
  CHECK(*parse_cpu_list("0") == std::vector<int>{0});
  CHECK(*parse_cpu_list("0,2-3") == std::vector<int>{0, 2, 3});
  CHECK(*parse_cpu_list("3, 1") == std::vector<int>{1, 3});
  CHECK_FALSE(parse_cpu_list("").has_value());
  CHECK_FALSE(parse_cpu_list("1,").has_value());
  CHECK_FALSE(parse_cpu_list("a").has_value());
  CHECK_FALSE(parse_cpu_list("2-1").has_value());
  CHECK_FALSE(parse_cpu_list("5000").has_value());
}

TEST_CASE("child output becomes whole prefixed lines") {
  LinePrefixer p("w | ", 8);
  std::string out;
  p.feed("one\ntw", out);
  CHECK(out == "w | one\n");
  p.feed("o\n\nthr", out);
  CHECK(out == "w | one\nw | two\nw | \n");
  out.clear();
  p.feed("ee", out);
  CHECK(out.empty());
  p.finish(out);
  CHECK(out == "w | three\n");

  out.clear();
  p.feed("0123456789abcdefXY", out);  // no newline: cut at 8 bytes, memory stays bounded
  CHECK(out == "w | 01234567\nw | 89abcdef\n");
  out.clear();
  p.feed("\n", out);
  CHECK(out == "w | XY\n");
  out.clear();
  p.feed("0123456789\n", out);  // a long complete line in one piece
  CHECK(out == "w | 01234567\nw | 89\n");
}

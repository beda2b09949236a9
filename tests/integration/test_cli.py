"""The pdctl binary's command line: help, version, exit codes, config files."""
from pdctl_testlib import *


@test
def help_lists_the_six_roles(ctx):
    r = ctx.run("--help")
    check_eq(r.returncode, 0, r.stderr)
    for role in ["router", "prefill", "decode", "serve", "bench", "up"]:
        check(f"\n  {role} " in r.stdout, role, r.stdout)


@test
def router_help_shows_sglang_router_flags(ctx):
    r = ctx.run("router", "--help")
    check_eq(r.returncode, 0, r.stderr)
    for flag in ["--host", "--port", "--worker-urls", "--pd-disaggregation", "--prefill", "--decode",
                 "--policy", "--prefill-policy", "--decode-policy", "--cache-threshold",
                 "--balance-abs-threshold", "--balance-rel-threshold", "--eviction-interval-secs",
                 "--max-tree-size", "--retry-max-retries", "--disable-retries", "--api-key",
                 "--health-check-interval-secs", "--max-concurrent-requests", "--request-timeout-secs"]:
        check(flag in r.stdout, flag)


@test
def worker_help_shows_sglang_server_flags(ctx):
    for role in ["serve", "prefill", "decode"]:
        r = ctx.run(role, "--help")
        check_eq(r.returncode, 0, r.stderr)
        for flag in ["--model-path", "--host", "--port", "--page-size", "--max-running-requests",
                     "--chunked-prefill-size", "--disaggregation-bootstrap-port", "--load-format"]:
            check(flag in r.stdout, role, flag)


@test
def version_and_usage_errors(ctx):
    r = ctx.run("--version")
    check_eq(r.returncode, 0)
    check(r.stdout.startswith("pdctl "), r.stdout)
    r = ctx.run("serve", "--bogus-flag")
    check_eq(r.returncode, 2, r.stderr)
    check("--bogus-flag" in r.stderr, r.stderr)
    r = ctx.run()
    check_eq(r.returncode, 2, "no role given")


@test
def config_file_errors_name_key_and_line(ctx):
    path = os.path.join(ctx.tmpdir, "bad.toml")
    with open(path, "w") as f:
        f.write("[decode]\nport = 30002\nmax-runing-requests = 8\n")
    r = ctx.run("decode", "-c", path)
    check_eq(r.returncode, 2, r.stderr)
    check(f"{path}:3" in r.stderr and "max-runing-requests" in r.stderr, r.stderr)


@test
def example_config_prints_for_each_role(ctx):
    example = os.path.join(ctx.source, "config.example.toml")
    for role, port in [("router", 30000), ("prefill", 30001), ("decode", 30002)]:
        r = ctx.run("-c", example, role, "--print-config")
        check_eq(r.returncode, 0, r.stderr)
        check(f"[{role}]" in r.stdout and f"port = {port}" in r.stdout, r.stdout)
    r = ctx.run("-c", example, "decode", "--port", "31002", "--print-config")
    check("port = 31002" in r.stdout, "the flag wins over the file")


if __name__ == "__main__":
    run_tests()

"""`pdctl up`: a whole deployment as children of one process.

Checked: a config with two entries on one port is refused (exit 2) before anything starts,
naming both; a router + 2 `serve` deployment comes up, answers a request through the
router, prefixes each child's lines with its name and pins a child to its `cpus`; SIGTERM
to `up` stops every child (router first) and exits 0; `kill -9` of one child is reported
with the signal and `up` exits 1, stopping the others; with --keep-going the others keep
serving; `kill -9` of `up` itself takes the children down (PR_SET_PDEATHSIG); a child that
fails to start makes `up` exit 1. After each: no process of the deployment is left.

The deployments use `serve` workers with the built-in `tiny` dummy model (no files needed);
skipped (exit 77) while `pdctl serve` is not implemented on this branch.
"""

import os
import re
import signal

from pdctl_testlib import *  # noqa: F401,F403

READY = "ready: send requests to"


def write_config(ctx, text, name="deploy.toml"):
    path = os.path.join(ctx.tmpdir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def serve_table(port, extra=""):
    return (f'[[serve]]\nhost = "127.0.0.1"\nport = {port}\nmodel-path = "tiny"\n'
            f'load-format = "dummy"\nmax-total-tokens = 4096\nthreads = 1\n{extra}')


def deployment(ctx, serve_extra=("", "")):
    """A router and two serve workers on free ports; returns (config path, router URL)."""
    rport = free_port()
    text = f'[router]\nhost = "127.0.0.1"\nport = {rport}\npolicy = "round_robin"\n'
    for extra in serve_extra:
        text += serve_table(free_port(), extra)
    return write_config(ctx, text), f"http://127.0.0.1:{rport}"


def start_up(ctx, config, *flags, name="up"):
    """Starts `pdctl up -c CONFIG FLAGS` and waits for its ready line; returns the Proc."""
    p = Proc(ctx, name, ["up", "-c", config, "--stop-grace-secs", "10", *flags])
    ctx.procs.append(p)

    def ready():
        log = p.log()
        if READY in log:
            return "ready"
        if not p.alive():
            return "exited"
        return None

    state = wait_until(ready, 60, interval=0.1, what="pdctl up to be ready")
    if state == "exited":
        log = p.log()
        if "not implemented" in log:
            skip("pdctl serve is not implemented yet")
        raise CheckFailed(f"pdctl up exited with {p.popen.returncode} before it was ready:\n{log}")
    return p


def child_pids(up):
    """{name: pid} of the children `up` started, from its log."""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"started (\S+) \(pid (\d+)", up.log())}


def running(pid):
    """True while `pid` is a live process (a zombie is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def check_all_gone(pids, timeout=15):
    pids = list(pids)
    try:
        wait_until(lambda: not any(running(p) for p in pids), timeout, what=f"processes {pids} to be gone")
    except CheckFailed:
        for p in pids:  # the test fails, but leaves nothing behind either
            if running(p):
                os.kill(p, signal.SIGKILL)
        raise


def wait_exit(p, timeout=30):
    wait_until(lambda: not p.alive(), timeout, what=f"{p.name} to exit")
    return p.popen.returncode


def generate(url):
    status, body = http_json("POST", url + "/generate",
                             {"text": "Once upon a time", "sampling_params": {"max_new_tokens": 4, "temperature": 0}},
                             timeout=30)
    check_eq(status, 200, body)
    return body


@test
def duplicate_port_is_refused_before_anything_starts(ctx):
    port = free_port()
    config = write_config(ctx, serve_table(port) + serve_table(port, 'name = "twin"\n'))
    r = ctx.run("up", "-c", config, timeout=30)
    check_eq(r.returncode, 2, r.stderr)
    check(f"port {port} is used twice" in r.stderr, r.stderr)
    check(f"serve-0 ({config}:1)" in r.stderr and f"twin ({config}:8)" in r.stderr, r.stderr)
    check("started" not in r.stderr, "nothing may start:", r.stderr)


@test
def sigterm_stops_every_child_router_first(ctx):
    config, router = deployment(ctx, serve_extra=('cpus = "0"\n', ""))
    up = start_up(ctx, config)
    pids = child_pids(up)
    check_eq(sorted(pids), ["router", "serve-0", "serve-1"])
    check(f"{READY} {router}" in up.log(), up.log())

    # A request through the router of the deployment.
    body = generate(router)
    check(body.get("meta_info", {}).get("completion_tokens") == 4, body)
    # Each child's lines carry its name; serve-0 is pinned to CPU 0.
    log = up.log()
    for name in pids:
        check(f"\n{name} | " in log, f"no line prefixed '{name} | ' in:\n{log}")
    with open(f"/proc/{pids['serve-0']}/status") as f:
        allowed = [l.split(":", 1)[1].strip() for l in f if l.startswith("Cpus_allowed_list")]
    check_eq(allowed, ["0"])

    up.signal(signal.SIGTERM)
    check_eq(wait_exit(up), 0, up.log())
    check_all_gone(pids.values())
    log = up.log()
    stopped = [log.find(f"{name} (pid {pid}) stopped") for name, pid in pids.items()]
    check(all(i >= 0 for i in stopped), log)
    check(log.find("router (pid") >= 0 and stopped[list(pids).index("router")] < min(
        stopped[list(pids).index("serve-0")], stopped[list(pids).index("serve-1")]), "router stops first:\n" + log)


@test
def kill9_of_a_child_is_reported_and_up_exits_nonzero(ctx):
    config, router = deployment(ctx)
    up = start_up(ctx, config)
    pids = child_pids(up)
    os.kill(pids["serve-1"], signal.SIGKILL)
    rc = wait_exit(up)
    log = up.log()
    check_eq(rc, 1, log)
    check(f"serve-1 (pid {pids['serve-1']}) killed by signal 9" in log, log)
    check_all_gone(pids.values())


@test
def keep_going_keeps_the_others_serving(ctx):
    config, router = deployment(ctx)
    up = start_up(ctx, config, "--keep-going")
    pids = child_pids(up)
    os.kill(pids["serve-0"], signal.SIGKILL)
    wait_until(lambda: "serve-0 (pid" in up.log() and "killed by signal 9" in up.log(), 15,
               what="up to report serve-0")
    check(up.alive(), up.log())
    check(running(pids["router"]) and running(pids["serve-1"]))
    serve1 = re.search(r"serve-1 (http://127.0.0.1:\d+)", up.log()).group(1)
    generate(serve1)
    # A child failed: the final exit code says so even after a clean stop.
    up.signal(signal.SIGTERM)
    check_eq(wait_exit(up), 1, up.log())
    check_all_gone(pids.values())


@test
def kill9_of_up_takes_the_children_down(ctx):
    config, _ = deployment(ctx)
    up = start_up(ctx, config)
    pids = child_pids(up)
    up.kill9()
    check_all_gone(pids.values())


@test
def a_child_that_fails_to_start_stops_the_deployment(ctx):
    rport = free_port()
    config = write_config(ctx, f'[router]\nport = {rport}\n' + serve_table(free_port()) +
                          serve_table(free_port()).replace('model-path = "tiny"', 'model-path = "/nonexistent.gguf"')
                          .replace('load-format = "dummy"', 'load-format = "gguf"'))
    p = Proc(ctx, "up", ["up", "-c", config])
    ctx.procs.append(p)
    rc = wait_exit(p, 60)
    log = p.log()
    check_eq(rc, 1, log)
    check("serve-1 (pid" in log and "exited with status 1" in log, log)
    check(READY not in log, log)
    check("started router" not in log, "the router starts only once the workers are healthy:\n" + log)
    check_all_gone(child_pids(p).values())


if __name__ == "__main__":
    run_tests()

#!/usr/bin/env python3
"""The router's overhead as a reverse proxy, in one run on this machine.

    scripts/bench-router.py [--pdctl build/pdctl] [--worker serve|fixed|URL] [--connections 64]
                            [--duration 10] [--rounds 3] [--policy round_robin ...]

Starts one worker, then `pdctl router --worker-urls WORKER` and nginx (Debian's, a
generated config in a temporary directory, a non-daemon process on a free port) as a
reverse proxy in front of the same worker, and drives each of the three targets - the
worker directly, the router, nginx - with wrk: POST /generate with a 1-token request,
--connections at once, for --duration seconds. A round visits the three targets in turn,
each round in a rotated order (so that none always runs first or last while the machine's
load drifts); it prints every round, the medians over rounds of requests/s and p50/p99
latency, what each proxy adds to the direct latency, and the router/nginx ratios of each
round and their median.

The worker (--worker):
- `serve` (the default): `pdctl serve --model-path tiny --load-format dummy` (a real worker:
  HTTP, tokenizer, scheduler and a forward pass of a 3.3M-parameter random Llama), with
  --worker-threads forward threads;
- `fixed`: nginx answering every POST /generate with a fixed 1-token SGLang reply (a worker
  that costs as little as possible, so that the proxies' own cost shows most);
- a URL: a worker already running there.

wrk comes from Debian (`apt-get install wrk`); nginx from nginx-light. Everything runs on
this machine's cores together: on a shared 2-core machine compare ratios within one run.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

REPLY = ('{"text":" the","meta_info":{"id":"bench","prompt_tokens":8,"completion_tokens":1,'
         '"cached_tokens":0,"finish_reason":{"type":"length","length":1},"e2e_latency":0.0001}}')
BODY = '{"text":"Once upon a time","sampling_params":{"max_new_tokens":1,"temperature":0}}'


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=15, method="GET"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(url, method=method, data=BODY.encode() if method == "POST" else None)
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"bench-router: {url} did not answer within {timeout}s")


def nginx_conf(tmp, port, upstream=None, workers=1):
    """A minimal nginx.conf: a fixed-reply worker, or a keep-alive reverse proxy."""
    if upstream:
        body = f"""
    upstream worker {{ server {upstream}; keepalive 256; keepalive_requests 100000000; }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        keepalive_requests 100000000;
        location / {{
            proxy_pass http://worker;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}"""
    else:
        body = f"""
    server {{
        listen 127.0.0.1:{port} reuseport;
        keepalive_requests 100000000;
        location / {{
            default_type application/json;
            return 200 '{REPLY}';
        }}
    }}"""
    return f"""worker_processes {workers};
daemon off;
master_process on;
pid {tmp}/nginx-{port}.pid;
error_log {tmp}/nginx-{port}.err warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body-{port};
    proxy_temp_path {tmp}/proxy-{port};
    fastcgi_temp_path {tmp}/fcgi-{port};
    uwsgi_temp_path {tmp}/uwsgi-{port};
    scgi_temp_path {tmp}/scgi-{port};
    client_body_buffer_size 64k;
{body}
}}
"""


def start_nginx(nginx, tmp, port, upstream=None, workers=1):
    path = os.path.join(tmp, f"nginx-{port}.conf")
    with open(path, "w") as f:
        f.write(nginx_conf(tmp, port, upstream, workers))
    return subprocess.Popen([nginx, "-c", path, "-e", os.path.join(tmp, f"nginx-{port}.err")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def to_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)", text)
    v, unit = float(m.group(1)), m.group(2)
    return v * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def run_wrk(wrk, url, lua, args):
    cmd = [wrk, "-t", str(args.threads), "-c", str(args.connections), "-d", f"{args.duration}s", "--latency",
           "-s", lua, url + "/generate"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = to_ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    p99 = to_ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50": p50, "p99": p99, "non2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": sock.group(1) if sock else "", "raw": out}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pdctl", default=os.path.join(os.path.dirname(__file__), "..", "build", "pdctl"))
    ap.add_argument("--worker", default="serve",
                    help="serve (pdctl serve on the tiny dummy model), fixed (nginx fixed reply) or a worker URL")
    ap.add_argument("--worker-threads", type=int, default=1, help="pdctl serve --threads")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="wrk threads")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--nginx-workers", type=int, default=1,
                    help="nginx worker processes of the proxy (1: one event loop, as the router)")
    ap.add_argument("--router-flag", action="append", default=[],
                    help="extra router flag (repeatable), e.g. --router-flag=--policy=cache_aware")
    ap.add_argument("--policy", default="round_robin")
    args = ap.parse_args()

    wrk, nginx = shutil.which("wrk"), shutil.which("nginx") or "/usr/sbin/nginx"
    if not wrk:
        sys.exit("bench-router: wrk is missing (apt-get install wrk)")
    if not os.path.exists(nginx):
        sys.exit("bench-router: nginx is missing (apt-get install nginx-light)")
    pdctl = os.path.abspath(args.pdctl)
    tmp = tempfile.mkdtemp(prefix="pdctl-bench-router-")
    procs = []
    try:
        if args.worker == "fixed":
            wport = free_port()
            procs.append(start_nginx(nginx, tmp, wport))
            worker = f"http://127.0.0.1:{wport}"
            worker_desc = "nginx fixed reply"
        elif args.worker == "serve":
            wport = free_port()
            worker_log = open(os.path.join(tmp, "serve.log"), "wb")
            procs.append(subprocess.Popen([pdctl, "serve", "--host", "127.0.0.1", "--port", str(wport), "--model-path",
                                           "tiny", "--load-format", "dummy", "--threads", str(args.worker_threads),
                                           "--log-level", "warning"],
                                          stdout=worker_log, stderr=subprocess.STDOUT, start_new_session=True))
            worker = f"http://127.0.0.1:{wport}"
            worker_desc = f"pdctl serve tiny dummy --threads {args.worker_threads}"
            wait_http(worker + "/health", timeout=120)
        else:
            worker = args.worker.rstrip("/")
            worker_desc = worker
        wait_http(worker + "/generate", method="POST")

        rport, nport = free_port(), free_port()
        router_log = open(os.path.join(tmp, "router.log"), "wb")
        procs.append(subprocess.Popen([pdctl, "router", "--host", "127.0.0.1", "--port", str(rport), "--worker-urls",
                                       worker, "--policy", args.policy, "--log-level", "warning", *args.router_flag],
                                      stdout=router_log, stderr=subprocess.STDOUT, start_new_session=True))
        procs.append(start_nginx(nginx, tmp, nport, upstream=worker.split("://", 1)[1], workers=args.nginx_workers))
        router, proxy = f"http://127.0.0.1:{rport}", f"http://127.0.0.1:{nport}"
        wait_http(router + "/readiness")
        wait_http(proxy + "/generate", method="POST")

        lua = os.path.join(tmp, "post.lua")
        with open(lua, "w") as f:
            f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                    f"wrk.body = '{BODY}'\n")
        targets = [("direct", worker), ("pdctl router", router), ("nginx", proxy)]
        for _, url in targets:  # warm-up: connections, pools, caches
            run_wrk(wrk, url, lua, argparse.Namespace(**{**vars(args), "duration": 2}))
        results = {name: [] for name, _ in targets}
        for r in range(args.rounds):
            for name, url in targets[r % 3:] + targets[:r % 3]:
                res = run_wrk(wrk, url, lua, args)
                if res["non2xx"] or res["socket_errors"]:
                    print(f"warning: {name}: {res['non2xx']} non-2xx, socket errors: {res['socket_errors']}")
                results[name].append(res)
                print(f"round {r + 1} {name:13s} {res['rps']:10.0f} req/s  p50 {res['p50']:7.3f} ms  "
                      f"p99 {res['p99']:7.3f} ms", flush=True)

        med = {n: {k: statistics.median(x[k] for x in rs) for k in ("rps", "p50", "p99")} for n, rs in results.items()}
        cores = os.cpu_count()
        load = os.getloadavg()[0]
        print()
        print(f"{args.connections} connections, wrk -t{args.threads}, {args.duration}s x {args.rounds} rounds, "
              f"1-token POST /generate; worker: {worker_desc}; "
              f"router --policy {args.policy}; nginx proxy with {args.nginx_workers} worker process(es); "
              f"{cores} cores, load average {load:.1f} (medians)")
        print(f"| target | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms |")
        print(f"| --- | --- | --- | --- | --- | --- |")
        d = med["direct"]
        for name, _ in targets:
            m = med[name]
            added = "" if name == "direct" else f"{m['p50'] - d['p50']:+.3f} | {m['p99'] - d['p99']:+.3f}"
            print(f"| {name} | {m['rps']:.0f} | {m['p50']:.3f} | {m['p99']:.3f} | " + (added or " | ") + " |")
        # Per-round ratios: the two proxies ran back to back, under about the same load.
        rr = [r["rps"] / n["rps"] for r, n in zip(results["pdctl router"], results["nginx"])]
        print(f"\npdctl router / nginx throughput per round: {' '.join(f'{x:.2f}' for x in rr)}; "
              f"median {statistics.median(rr):.2f}")
        for q in ("p50", "p99"):
            added = [(r[q] - d[q], n[q] - d[q]) for r, n, d in
                     zip(results["pdctl router"], results["nginx"], results["direct"])]
            print(f"added {q} ms per round (router, nginx): " + " ".join(f"({a:+.3f}, {b:+.3f})" for a, b in added))
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

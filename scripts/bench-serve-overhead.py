#!/usr/bin/env python3
"""Server overhead of `pdctl serve`: what HTTP, JSON and scheduling add to the engine's time.

Starts `pdctl serve --model-path tiny --load-format dummy` (or uses --url) and reads the
engine's own time from /metrics (pdctl:engine_forward_seconds_total: the forward passes; so
sampling, scheduling, detokenization, JSON and HTTP all count as overhead):

  throughput   /generate and /v1/completions, max_new_tokens 1, --connections (64) at once,
               driven by wrk (Debian's `wrk`): requests/s, latency p50/p99, and how busy the
               engine was (engine seconds / wall seconds: near 100% means the engine, not the
               server, limits the rate)
  per request  the same request one at a time (wrk, 1 connection): mean latency - engine time
               per request
  per token    --pairs requests of --stream-tokens tokens (ignore_eos), streamed and not,
               alternated one at a time by a keep-alive client here, the engine counter read
               between requests (outside the timed part): (latency - engine time) / tokens,
               and the streamed - non-streamed difference per token (SSE framing, one
               event per engine step)

Numbers depend on the machine and on what else runs on it: compare runs made on the same
machine in the same session only.

  scripts/bench-serve-overhead.py --pdctl build/pdctl [--threads 1] [--duration 10]
  scripts/bench-serve-overhead.py --url http://127.0.0.1:30000      # a server already running
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def metric(url, name):
    """Sum of a metric's samples in /metrics (0 when absent)."""
    _, text = get(url + "/metrics")
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def engine_time(url):
    return metric(url, "pdctl:engine_forward_seconds_total")


SERVER_PID = None  # set when this script started the server: then its threads' CPU time is read too


def thread_cpu():
    """CPU seconds of the server's event-loop thread ("loop": HTTP, JSON, tokenization, SSE
    framing) and of its engine thread ("engine": forward, scheduling, sampling,
    detokenization), from /proc/PID/task/*/schedstat (ns). Unlike latencies these do not
    grow when other processes compete for the cores."""
    if SERVER_PID is None:
        return None
    out = {"loop": 0.0, "engine": 0.0}
    base = f"/proc/{SERVER_PID}/task"
    for tid in os.listdir(base):
        try:
            with open(f"{base}/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"{base}/{tid}/schedstat") as f:
                ns = int(f.read().split()[0])
        except OSError:
            continue
        key = "loop" if int(tid) == SERVER_PID else "engine" if name == "pdctl-engine" else None
        if key:
            out[key] += ns * 1e-9
    return out


def cpu_delta(c0, c1, count):
    if c0 is None or c1 is None:
        return {"loop": float("nan"), "engine": float("nan")}
    return {k: (c1[k] - c0[k]) / max(count, 1) for k in c0}


def parse_duration(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    if not m:
        return float("nan")
    v, unit = float(m.group(1)), m.group(2)
    return v * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def run_wrk(url, path, body, connections, threads, duration):
    """Runs wrk; returns {requests, rps, mean, p50, p99, errors} (latencies in seconds)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write('wrk.method = "POST"\n')
        f.write('wrk.headers["Content-Type"] = "application/json"\n')
        f.write("wrk.body = %s\n" % json.dumps(json.dumps(body)))
        lua = f.name
    try:
        out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--latency",
                              "-s", lua, url + path], capture_output=True, text=True, timeout=duration + 60).stdout
    finally:
        os.unlink(lua)
    res = {"errors": 0}
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Requests/sec:"):
            res["rps"] = float(line.split()[1])
        elif line.startswith("Latency") and "mean" not in res:
            res["mean"] = parse_duration(line.split()[1])
        elif line.startswith("50%"):
            res["p50"] = parse_duration(line.split()[1])
        elif line.startswith("99%"):
            res["p99"] = parse_duration(line.split()[1])
        elif "requests in" in line:
            res["requests"] = int(line.split()[0])
        elif line.startswith("Non-2xx") or line.startswith("Socket errors"):
            res["errors"] += sum(int(x) for x in re.findall(r"\d+", line))
    if "rps" not in res:
        raise RuntimeError("wrk gave no result:\n" + out)
    return res


def case(url, name, path, body, connections, threads, duration):
    e0 = engine_time(url)
    c0 = thread_cpu()
    t0 = time.monotonic()
    r = run_wrk(url, path, body, connections, threads, duration)
    wall = time.monotonic() - t0
    c1 = thread_cpu()  # before the /metrics scrape below, which costs the loop CPU too
    e1 = engine_time(url)
    r["cpu_per_request"] = cpu_delta(c0, c1, r.get("requests", 1))
    r["engine_per_request"] = (e1 - e0) / max(r.get("requests", 1), 1)
    r["engine_busy"] = (e1 - e0) / wall
    r["name"] = name
    return r


def timed_pairs(url, body, pairs, tokens):
    """Streamed and non-streamed `body` alternated one at a time on one keep-alive
    connection; returns {"whole": [(latency, engine)], "streamed": [...]} in seconds."""
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    out = {"whole": [], "streamed": [], "cpu": {"whole": None, "streamed": None}}
    try:
        for i in range(2 * pairs):
            kind = "streamed" if i % 2 else "whole"
            data = json.dumps(dict(body, stream=(kind == "streamed"))).encode()
            e0 = engine_time(url)
            c0 = thread_cpu()  # after the scrape: only the request's own CPU counts
            t0 = time.perf_counter()
            conn.request("POST", "/generate", body=data, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            payload = resp.read()  # the whole body (SSE: until the last chunk), unparsed
            latency = time.perf_counter() - t0
            c1 = thread_cpu()
            e1 = engine_time(url)
            if c0 is not None:
                acc = out["cpu"][kind] or {"loop": 0.0, "engine": 0.0}
                out["cpu"][kind] = {k: acc[k] + c1[k] - c0[k] for k in acc}
            if resp.status != 200:
                raise RuntimeError(f"/generate answered {resp.status}: {payload[:300]!r}")
            if kind == "whole" and json.loads(payload)["meta_info"]["completion_tokens"] != tokens:
                raise RuntimeError("the request did not produce the tokens asked for")
            out[kind].append((latency, e1 - e0))
    finally:
        conn.close()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pdctl", default="build/pdctl")
    ap.add_argument("--url", help="use this server instead of starting one")
    ap.add_argument("--model-path", default="tiny")
    ap.add_argument("--threads", type=int, default=1, help="the engine's --threads")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--stream-tokens", type=int, default=256)
    ap.add_argument("--pairs", type=int, default=10, help="streamed / non-streamed request pairs")
    ap.add_argument("--output-file", help="append the results as one JSON line")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed (apt-get install wrk)")

    proc = None
    url = args.url
    if not url:
        port = free_port()
        cmd = [args.pdctl, "serve", "--model-path", args.model_path, "--load-format", "dummy", "--port", str(port),
               "--threads", str(args.threads), "--log-level", "warning"]
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        global SERVER_PID
        SERVER_PID = proc.pid
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                sys.exit("pdctl serve exited: " + proc.stderr.read())
            try:
                if get(url + "/health", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                sys.exit("pdctl serve did not become healthy")
            time.sleep(0.1)
    try:
        prompt = {"input_ids": [1, 72, 101, 108, 108, 111]}
        one = dict(prompt, sampling_params={"max_new_tokens": 1, "temperature": 0})
        completion = {"prompt": [1, 72, 101, 108, 108, 111], "max_tokens": 1, "temperature": 0}
        n = args.stream_tokens
        long_body = dict(prompt, sampling_params={"max_new_tokens": n, "temperature": 0, "ignore_eos": True})
        run_wrk(url, "/generate", one, 4, 1, 2)  # warm-up

        d = args.duration
        results = [
            case(url, f"/generate max_new_tokens=1, {args.connections} connections", "/generate", one,
                 args.connections, args.wrk_threads, d),
            case(url, f"/v1/completions max_tokens=1, {args.connections} connections", "/v1/completions", completion,
                 args.connections, args.wrk_threads, d),
            case(url, "/generate max_new_tokens=1, 1 connection", "/generate", one, 1, 1, d),
        ]
        print(f"{'case':<52} {'req/s':>9} {'mean ms':>9} {'p50 ms':>8} {'p99 ms':>8} {'engine ms':>10} "
              f"{'busy':>6} {'added ms':>9} {'loop cpu us':>12} {'eng-thr us':>11}")
        for r in results:
            added = r["mean"] - r["engine_per_request"]
            r["added_per_request"] = added
            print(f"{r['name']:<52} {r['rps']:>9.1f} {r['mean'] * 1e3:>9.3f} {r.get('p50', 0) * 1e3:>8.3f} "
                  f"{r.get('p99', 0) * 1e3:>8.3f} {r['engine_per_request'] * 1e3:>10.3f} "
                  f"{r['engine_busy'] * 100:>5.0f}% {added * 1e3 if r is results[2] else float('nan'):>9.3f} "
                  f"{r['cpu_per_request']['loop'] * 1e6:>12.1f} {r['cpu_per_request']['engine'] * 1e6:>11.1f}"
                  + (f"  ({r['errors']} errors)" if r["errors"] else ""))
        print("(engine ms = forward time per request; busy = forward seconds / wall seconds; added ms = mean\n"
              " latency - engine ms, only meaningful one at a time: with many connections the latency is mostly\n"
              " waiting for the engine's batch; loop cpu / eng-thr = CPU microseconds per request of the\n"
              " event-loop thread and of the engine thread, forward included)")

        pairs = timed_pairs(url, long_body, args.pairs, n)

        def added_per_token(samples):
            per = sorted((lat - eng) / n for lat, eng in samples)
            return per[len(per) // 2], sum(lat for lat, _ in samples) / len(samples), \
                sum(eng for _, eng in samples) / len(samples)
        w_med, w_lat, w_eng = added_per_token(pairs["whole"])
        s_med, s_lat, s_eng = added_per_token(pairs["streamed"])
        print(f"\n{n}-token requests, {args.pairs} each, alternated:")
        print(f"  not streamed: mean latency {w_lat * 1e3:.1f} ms, engine {w_eng * 1e3:.1f} ms, "
              f"added per token (median) {w_med * 1e6:.1f} us")
        print(f"  streamed:     mean latency {s_lat * 1e3:.1f} ms, engine {s_eng * 1e3:.1f} ms, "
              f"added per token (median) {s_med * 1e6:.1f} us")
        cpu = pairs["cpu"]
        if cpu["whole"] and cpu["streamed"]:
            k = args.pairs * n
            # The engine thread's CPU is shown but not set against the forward time: that is wall
            # time, which grows when the core is shared and so may exceed the thread's CPU time.
            print(f"  loop-thread CPU per token: not streamed {cpu['whole']['loop'] / k * 1e6:.2f} us, "
                  f"streamed {cpu['streamed']['loop'] / k * 1e6:.2f} us; engine-thread CPU per token "
                  f"(forward included): not streamed {cpu['whole']['engine'] / k * 1e6:.1f} us, "
                  f"streamed {cpu['streamed']['engine'] / k * 1e6:.1f} us")
        print(f"\nadded per request (1 token, one at a time): {results[2]['added_per_request'] * 1e6:.0f} us")
        print(f"added per streamed token: {s_med * 1e6:.1f} us; streaming's own cost per token "
              f"(streamed - not streamed): {(s_med - w_med) * 1e6:.1f} us")
        if args.output_file:
            with open(args.output_file, "a") as f:
                f.write(json.dumps({"results": results, "added_per_request_s": results[2]["added_per_request"],
                                    "added_per_streamed_token_s": s_med, "added_per_token_not_streamed_s": w_med,
                                    "pairs": pairs, "connections": args.connections, "threads": args.threads}) + "\n")
    finally:
        if proc:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()

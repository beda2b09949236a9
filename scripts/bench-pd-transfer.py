#!/usr/bin/env python3
"""PD disaggregation: the KV hand-off of one long prompt, measured through the real roles.

Starts `pdctl prefill` and `pdctl decode` (--model-path llama-1b --load-format dummy by
default) on loopback for each UCX_TLS in --tls, sends one warm-up request and then, one at
a time, --repeat requests of a --prompt-tokens prompt (max_new_tokens 2) with the bootstrap
fields, and reports from the workers' /metrics:

  transfer     KV bytes / (first put -> completion of the notice's flush), prefill's
               pdctl:kv_transfer_bytes_total and sglang:kv_transfer_latency_ms, measured with
               --disaggregation-disable-layerwise-transfer so that it is the network alone
               (layer by layer, the window spans the prompt's compute);
  perftest     `ucx_perftest -t ucp_put_bw` between two processes with the same UCX_TLS and
               the message size of pdctl's puts (a layer's K or V run, split at 1 MiB), in
               the same run: the ratio is pdctl / perftest;
  hand-off     decode's KV-ready time - prefill's prompt-done time (both CLOCK_MONOTONIC:
               pdctl:pd_last_prompt_computed_seconds, pdctl:pd_last_kv_ready_seconds), with
               and without layer-by-layer sending.

  scripts/bench-pd-transfer.py --pdctl build/pdctl [--tls posix,cma,self tcp,self] [--prompt-tokens 2048]
"""

import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, timeout=600):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(text, name):
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else None


def wait_health(url, proc, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: exited with {proc.returncode}")
        try:
            if http("GET", url + "/health", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not healthy within {timeout}s")


class Pair:
    def __init__(self, a, tls, layerwise, logdir):
        self.bport, pport, dport = free_port(), free_port(), free_port()
        env = dict(os.environ, UCX_TLS=tls)
        common = ["--model-path", a.model, "--load-format", "dummy", "--max-total-tokens", str(a.pool_tokens),
                  "--context-length", str(max(4096, a.prompt_tokens + 64)), "--host", "127.0.0.1"]
        extra = [] if layerwise else ["--disaggregation-disable-layerwise-transfer"]
        tag = f"{tls.replace(',', '_')}-{'lw' if layerwise else 'whole'}"
        self.logs = [open(os.path.join(logdir, f"{tag}-{r}.log"), "wb") for r in ("prefill", "decode")]
        self.p = subprocess.Popen([a.pdctl, "prefill", *common, "--port", str(pport), "--disaggregation-bootstrap-port",
                                   str(self.bport), *extra], env=env, stdout=self.logs[0], stderr=subprocess.STDOUT)
        self.d = subprocess.Popen([a.pdctl, "decode", *common, "--port", str(dport)], env=env, stdout=self.logs[1],
                                  stderr=subprocess.STDOUT)
        self.purl, self.durl = f"http://127.0.0.1:{pport}", f"http://127.0.0.1:{dport}"
        wait_health(self.purl, self.p)
        wait_health(self.durl, self.d)

    def call(self, ids):
        body = {"input_ids": ids, "sampling_params": {"temperature": 0, "max_new_tokens": 2, "ignore_eos": True},
                "bootstrap_host": "127.0.0.1", "bootstrap_port": self.bport, "bootstrap_room": random.getrandbits(63)}
        out = {}
        t = threading.Thread(target=lambda: out.update(p=http("POST", self.purl + "/generate", body)))
        t.start()
        d = http("POST", self.durl + "/generate", body)
        t.join()
        if d[0] != 200 or out["p"][0] != 200:
            raise RuntimeError(f"request failed: decode {d}, prefill {out['p']}")

    def metrics(self):
        return http("GET", self.purl + "/metrics")[1], http("GET", self.durl + "/metrics")[1]

    def close(self):
        for pr in (self.p, self.d):
            pr.send_signal(signal.SIGTERM)
        for pr in (self.p, self.d):
            try:
                pr.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pr.kill()
        for f in self.logs:
            f.close()


def listening(port):
    want = ":%04X" % port
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[3] == "0A" and parts[1].endswith(want):
                return True
    return False


def perftest(tls, size, iters):
    env = dict(os.environ, UCX_TLS=tls)
    port = free_port()
    server = subprocess.Popen(["ucx_perftest", "-p", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not listening(port):
            if time.monotonic() > deadline:
                raise RuntimeError("ucx_perftest's server did not listen")
            time.sleep(0.01)
        out = subprocess.run(["ucx_perftest", "127.0.0.1", "-p", str(port), "-t", "ucp_put_bw", "-s", str(size),
                              "-n", str(iters), "-w", str(max(iters // 10, 1)), "-v"], env=env, capture_output=True,
                             text=True, timeout=300).stdout
    finally:
        server.wait(timeout=30)
    mib_s = None
    for line in out.splitlines():
        f = line.split(",")
        if len(f) == 8 and f[5][:1].isdigit():
            mib_s = float(f[5])
    if mib_s is None:
        raise RuntimeError("could not read ucx_perftest's output:\n" + out)
    return mib_s * 1024 * 1024 / 1e9


def measure(a, tls, layerwise, logdir):
    pair = Pair(a, tls, layerwise, logdir)
    try:
        rng = random.Random(7)
        pair.call([1] + [rng.randrange(3, 30000) for _ in range(15)])  # connect, wire-up
        res = []
        for i in range(a.repeat):
            ids = [1] + [rng.randrange(3, 30000) for _ in range(a.prompt_tokens - 1)]
            p0, _ = pair.metrics()
            t0 = time.monotonic()
            pair.call(ids)
            wall = time.monotonic() - t0
            p1, d1 = pair.metrics()
            nbytes = metric(p1, "pdctl:kv_transfer_bytes_total") - metric(p0, "pdctl:kv_transfer_bytes_total")
            lat_ms = metric(p1, "sglang:kv_transfer_latency_ms_sum") - metric(p0, "sglang:kv_transfer_latency_ms_sum")
            handoff = metric(d1, "pdctl:pd_last_kv_ready_seconds") - metric(p1, "pdctl:pd_last_prompt_computed_seconds")
            res.append({"bytes": nbytes, "latency_ms": lat_ms, "gb_s": nbytes / (lat_ms * 1e-3) / 1e9,
                        "handoff_ms": handoff * 1e3, "wall_s": wall})
        return res
    finally:
        pair.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pdctl", default="build/pdctl")
    ap.add_argument("--model", default="llama-1b")
    ap.add_argument("--tls", nargs="+", default=["posix,cma,self", "tcp,self"])
    ap.add_argument("--prompt-tokens", type=int, default=2048)
    ap.add_argument("--pool-tokens", type=int, default=8192)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--max-put-bytes", type=int, default=1 << 20)
    ap.add_argument("--output-file", help="append one JSON line per transport")
    a = ap.parse_args()
    logdir = tempfile.mkdtemp(prefix="pdctl-pd-bench-")
    print(f"model {a.model} (dummy), prompt {a.prompt_tokens} tokens, {a.repeat} requests per case; logs in {logdir}")
    for tls in a.tls:
        whole = measure(a, tls, False, logdir)
        lw = measure(a, tls, True, logdir)
        best = max(whole, key=lambda r: r["gb_s"])
        # pdctl's puts: one layer's K (or V) for the prompt is one contiguous run on both
        # sides in a fresh pool, split at max_put_bytes.
        size = a.max_put_bytes
        perf = perftest(tls, size, max(int(best["bytes"] // size), 100))
        med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
        row = {"transport": tls, "prompt_tokens": a.prompt_tokens, "kv_bytes": best["bytes"],
               "transfer_gb_per_s": best["gb_s"], "transfer_latency_ms": best["latency_ms"],
               "perftest_put_bw_gb_per_s": perf, "message_bytes": size, "ratio": best["gb_s"] / perf,
               "handoff_ms_whole": med([r["handoff_ms"] for r in whole]),
               "handoff_ms_layerwise": med([r["handoff_ms"] for r in lw]),
               "request_s_whole": med([r["wall_s"] for r in whole]),
               "request_s_layerwise": med([r["wall_s"] for r in lw])}
        print(f"UCX_TLS={tls}: KV {best['bytes'] / 2**20:.1f} MiB in {best['latency_ms']:.1f} ms = "
              f"{best['gb_s']:.2f} GB/s; ucx_perftest ucp_put_bw {size} B: {perf:.2f} GB/s -> "
              f"{100 * row['ratio']:.0f}%")
        print(f"  prompt done -> KV at decode: {row['handoff_ms_whole']:.1f} ms after the whole prompt, "
              f"{row['handoff_ms_layerwise']:.1f} ms layer by layer "
              f"(request {row['request_s_whole']:.2f} s vs {row['request_s_layerwise']:.2f} s)")
        if a.output_file:
            with open(a.output_file, "a") as f:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

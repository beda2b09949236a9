"""Helpers for pdctl's integration tests: start real processes on loopback, talk HTTP
to them, and clean up. Python standard library only.

A test file looks like:

    from pdctl_testlib import *

    @test
    def serve_answers_health(ctx):
        w = ctx.start("serve", "--model-path", ctx.stories_gguf())
        status, body = http_json("GET", w.url + "/health")
        check(status == 200, body)

    if __name__ == "__main__":
        run_tests()

CTest calls it with --pdctl BIN --shared DIR --source DIR --build DIR. Exit code 77
means skipped (a reference file is missing); any failure exits 1 and prints the logs
of the processes the test started.
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse

SKIP = 77

_tests = []


def test(fn):
    """Registers a test function taking a Context."""
    _tests.append(fn)
    return fn


class Skip(Exception):
    pass


class CheckFailed(AssertionError):
    pass


def skip(reason):
    raise Skip(reason)


def check(cond, *msg):
    if not cond:
        raise CheckFailed(" ".join(str(m) for m in msg) or "check failed")


def check_eq(actual, expected, *msg):
    if actual != expected:
        raise CheckFailed(f"expected {expected!r}, got {actual!r} " + " ".join(str(m) for m in msg))


def free_port():
    """A TCP port that was free a moment ago on 127.0.0.1 (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout, interval=0.05, what="condition"):
    """Polls pred() until it returns a truthy value; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last_exc = e
        time.sleep(interval)
    raise CheckFailed(f"timed out after {timeout}s waiting for {what}" +
                      (f" (last error: {last_exc})" if last_exc else ""))


# ----------------------------------------------------------------------------- HTTP

def _split(url):
    u = urllib.parse.urlsplit(url)
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    return u.hostname, u.port, path


def http_request(method, url, body=None, headers=None, timeout=60):
    """One request on a new connection. Returns (status, headers dict, body bytes)."""
    host, port, path = _split(url)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, bytearray)) else json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        payload = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload
    finally:
        conn.close()


def http_json(method, url, body=None, headers=None, timeout=60):
    """Returns (status, parsed JSON or the raw text when it is not JSON)."""
    status, _, payload = http_request(method, url, body, headers, timeout)
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload.decode(errors="replace")


def sse_events(method, url, body=None, headers=None, timeout=60):
    """Sends a streaming request; returns (status, [data payloads]) with "[DONE]" kept
    as the string "[DONE]" and every other payload parsed as JSON."""
    host, port, path = _split(url)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        hdrs = dict(headers or {})
        data = json.dumps(body).encode() if body is not None else None
        if data is not None:
            hdrs.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        if resp.status != 200:
            return resp.status, [resp.read().decode(errors="replace")]
        events, buf = [], b""
        while True:
            chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
            if not chunk:
                break
            buf += chunk
            while b"\n\n" in buf:
                raw, buf = buf.split(b"\n\n", 1)
                lines = [l[5:].lstrip() for l in raw.split(b"\n") if l.startswith(b"data:")]
                if not lines:
                    continue
                payload = b"\n".join(lines).decode()
                events.append(payload if payload == "[DONE]" else json.loads(payload))
        return resp.status, events
    finally:
        conn.close()


# ----------------------------------------------------------------------------- processes

class Proc:
    """A pdctl process started by a test; its stderr goes to a log file."""

    def __init__(self, ctx, name, args, env=None, argv=None):
        """Runs `pdctl ARGS`, or `argv` as given (a helper such as a fake worker)."""
        self.ctx = ctx
        self.name = name
        self.args = args
        self.log_path = os.path.join(ctx.tmpdir, f"{name}.log")
        self._log = open(self.log_path, "wb")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.popen = subprocess.Popen(argv or ([ctx.pdctl] + args), stdout=self._log, stderr=subprocess.STDOUT,
                                      env=full_env, start_new_session=True)
        self.port = None
        self.url = None

    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def wait_healthy(self, path="/health", timeout=60):
        def ok():
            if not self.alive():
                raise CheckFailed(f"{self.name} exited with {self.popen.returncode}:\n{self.log()}")
            try:
                status, _, _ = http_request("GET", self.url + path, timeout=2)
                return status == 200
            except OSError:
                return False
        wait_until(ok, timeout, what=f"{self.name} at {self.url}{path}")
        return self

    def signal(self, sig):
        if self.alive():
            self.popen.send_signal(sig)

    def kill9(self):
        self.signal(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout=15):
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        self._log.close()
        return self.popen.returncode

    def log(self):
        if not self._log.closed:
            self._log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")


class Context:
    """What a test gets: paths, and process management with cleanup."""

    def __init__(self, args):
        self.pdctl = os.path.abspath(args.pdctl)
        self.shared = os.path.abspath(args.shared)
        self.source = os.path.abspath(args.source)
        self.build = os.path.abspath(args.build)
        self.tmpdir = tempfile.mkdtemp(prefix="pdctl-it-")
        self.procs = []

    # reference data
    def shared_path(self, rel):
        p = os.path.join(self.shared, rel)
        if not os.path.exists(p):
            skip(f"{p} is absent")
        return p

    def stories_gguf(self):
        return self.shared_path("models/stories260K.gguf")

    def stories_hf(self):
        return self.shared_path("models/stories260K-hf")

    def golden(self, name="stories260K_greedy.json"):
        with open(self.shared_path("golden/" + name)) as f:
            return json.load(f)

    # processes
    def start(self, role, *args, name=None, port=None, env=None, wait=True, health_path="/health",
              timeout=90):
        """Starts `pdctl ROLE ARGS --host 127.0.0.1 --port P` and waits for health."""
        port = port or free_port()
        name = name or f"{role}-{len(self.procs)}"
        p = Proc(self, name, [role, *args, "--host", "127.0.0.1", "--port", str(port)], env)
        p.port = port
        p.url = f"http://127.0.0.1:{port}"
        self.procs.append(p)
        if wait:
            p.wait_healthy(health_path, timeout)
        return p

    def start_fake_worker(self, mode="regular", model="fake-model", name=None, port=None, wait=True):
        """Starts tests/integration/fake_worker.py (a fake SGLang worker: regular, prefill or
        decode) on a free port and waits for its /health."""
        port = port or free_port()
        name = name or f"fake-{mode}-{len(self.procs)}"
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_worker.py")
        argv = [sys.executable, script, "--port", str(port), "--mode", mode, "--model", model]
        p = Proc(self, name, argv[1:], argv=argv)
        p.port = port
        p.url = f"http://127.0.0.1:{port}"
        self.procs.append(p)
        if wait:
            p.wait_healthy("/health", 30)
        return p

    def openai_module(self):
        """The official `openai` npm package (v4), installed once into BUILD/npm with npm and
        reused; skips the test when node, npm or the registry is unavailable."""
        node, npm = shutil.which("node"), shutil.which("npm")
        if not node or not npm:
            skip("node and npm are needed for the openai client test")
        prefix = os.path.join(self.build, "npm")
        module = os.path.join(prefix, "node_modules", "openai")
        os.makedirs(prefix, exist_ok=True)
        import fcntl
        with open(os.path.join(prefix, ".install.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test runs install once
            if not os.path.exists(os.path.join(module, "package.json")):
                try:
                    r = subprocess.run([npm, "install", "--prefix", prefix, "--no-audit", "--no-fund",
                                        "--loglevel=error", "openai@4"],
                                       capture_output=True, text=True, timeout=240)
                except subprocess.TimeoutExpired:
                    skip("npm install openai@4 timed out (no network?)")
                if r.returncode != 0 or not os.path.exists(os.path.join(module, "package.json")):
                    skip(f"npm install openai@4 failed (no network?): {r.stderr.strip()[-300:]}")
        return module

    def openai_client(self, base_url, spec, api_key="none"):
        """Runs tests/integration/openai_client.js with the official client against
        base_url (".../v1"); returns its JSON result."""
        module = self.openai_module()
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openai_client.js")
        r = subprocess.run(["node", script, base_url, api_key, json.dumps(spec)], capture_output=True,
                           text=True, timeout=120, env=dict(os.environ, OPENAI_MODULE=module))
        check(r.returncode == 0, "openai client failed:", r.stderr[-2000:])
        return json.loads(r.stdout.strip().splitlines()[-1])

    def run(self, *args, timeout=300, env=None):
        """Runs pdctl to completion; returns CompletedProcess with text stdout/stderr."""
        full_env = dict(os.environ)
        full_env.update(env or {})
        return subprocess.run([self.pdctl, *args], capture_output=True, text=True, timeout=timeout,
                              env=full_env)

    def cleanup(self, failed):
        for p in self.procs:
            p.stop()
        if failed:
            for p in self.procs:
                print(f"----- log of {p.name} ({' '.join(p.args)}) -----")
                print(p.log()[-20000:])
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def run_tests():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pdctl", required=True)
    parser.add_argument("--shared", required=True)
    parser.add_argument("--source", default=os.getcwd())
    parser.add_argument("--build", default=os.getcwd())
    parser.add_argument("-k", dest="pattern", default=None, help="run only tests whose name contains this")
    args = parser.parse_args()

    failures, skipped, ran = 0, 0, 0
    for fn in _tests:
        if args.pattern and args.pattern not in fn.__name__:
            continue
        ctx = Context(args)
        t0 = time.monotonic()
        failed = False
        try:
            fn(ctx)
            ran += 1
            print(f"PASS {fn.__name__} ({time.monotonic() - t0:.1f}s)", flush=True)
        except Skip as e:
            skipped += 1
            print(f"SKIP {fn.__name__}: {e}", flush=True)
        except Exception:  # noqa: BLE001 - report every failure and go on
            failed = True
            failures += 1
            print(f"FAIL {fn.__name__} ({time.monotonic() - t0:.1f}s)", flush=True)
            traceback.print_exc()
        finally:
            ctx.cleanup(failed)
    print(f"{ran} passed, {failures} failed, {skipped} skipped")
    if failures:
        sys.exit(1)
    if ran == 0 and skipped > 0:
        sys.exit(SKIP)
    sys.exit(0)


def fake_config(worker, **cfg):
    """Changes a fake worker's behaviour (see fake_worker.py)."""
    status, body = http_json("POST", worker.url + "/_fake/config", cfg)
    check_eq(status, 200, body)


def fake_requests(worker):
    """The generation requests a fake worker received, with their outcome."""
    status, body = http_json("GET", worker.url + "/_fake/requests")
    check_eq(status, 200, body)
    return body["requests"]


def metric_value(metrics_text, name, **labels):
    """The value of one Prometheus sample (labels matched exactly), or None."""
    for line in metrics_text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        got = {}
        if "{" in head:
            for part in head[head.index("{") + 1:head.rindex("}")].split(","):
                if part:
                    k, _, v = part.partition("=")
                    got[k] = v.strip('"')
        if head.split("{")[0] == name and got == {k: str(v) for k, v in labels.items()}:
            return float(value)
    return None


def parallel(fn, items, workers=16):
    """Runs fn(item) on a thread per item (up to `workers` at once); returns results in order."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(fn, items))


__all__ = [
    "test", "skip", "check", "check_eq", "free_port", "wait_until", "http_request", "http_json",
    "sse_events", "Proc", "Context", "run_tests", "parallel", "SKIP", "CheckFailed", "threading",
    "time", "json", "os", "signal", "subprocess", "fake_config", "fake_requests", "metric_value",
]

"""A fake SGLang worker for the router's integration tests (Python standard library only).

    python3 fake_worker.py --port P [--mode regular|prefill|decode] [--model NAME]

It answers what the router forwards - /generate, /v1/completions, /v1/chat/completions
(streamed as SSE or not), /v1/models, /get_model_info, /get_server_info, /health,
/health_generate, /get_load, /flush_cache, /v1/tokenize, /v1/detokenize - cheaply and
deterministically:

  - tokens are the prompt's UTF-8 bytes; the output is `max_new_tokens` / `max_tokens`
    (default 8) words chosen from the prompt's CRC32, the same on every worker;
  - a prefix cache: `cached_tokens` is the longest common byte prefix with a prompt this
    worker saw before (reset by /flush_cache);
  - logprobs: input_token_logprobs [[lp, byte, null], ...]; a decode worker returns only
    [[-9.0, -1, "decode"]] so that the router's merge is visible;
  - prefill and decode modes refuse a generation request without bootstrap_host,
    bootstrap_port and bootstrap_room (400), and record them.

Test control (JSON):
  POST /_fake/config {...}  merged into the behaviour:
      fail_status, fail_count   answer the next fail_count generation requests with
                                fail_status (-1: all of them)
      delay_ms                  wait before answering a generation request (prefill:
                                before its reply, the "late prefill")
      token_interval_ms         pause between streamed chunks
      die_after_tokens          SIGKILL itself after streaming that many chunks
      health_status             what /health and /health_generate answer (200)
      load                      what /get_load reports (default: requests in flight)
  GET  /_fake/requests      {"requests": [{path, body, outcome, started, ended, ...}]}
                            outcome: "ok", "aborted" (the client went away), "failed"
  GET  /_fake/stats         {"counts": {path: n}, "in_flight": n, "flushes": n}
  POST /_fake/reset         forget requests, counters, cache and config
"""

import argparse
import json
import os
import select
import signal
import socket
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORDS = ["once", "upon", "a", "time", "there", "was", "little", "girl", "named", "lily",
         "she", "loved", "to", "play", "in", "the", "park", "with", "her", "dog"]


class State:
    def __init__(self, mode, model):
        self.mode = mode
        self.model = model
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.config = {}
            self.requests = []
            self.counts = {}
            self.in_flight = 0
            self.seen = []
            self.flushes = 0


STATE = None


def output_words(prompt, n):
    h = zlib.crc32(prompt.encode())
    return [WORDS[(h + 7 * i) % len(WORDS)] for i in range(n)]


def common_prefix(a, b):
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    # ------------------------------------------------------------------ plumbing
    def body_json(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if not raw:
            return {}
        return json.loads(raw)

    def send_json(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def begin_sse(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def event(self, obj):
        payload = obj if isinstance(obj, str) else json.dumps(obj)
        self.chunk(("data: " + payload + "\n\n").encode())

    def end_chunks(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def client_gone(self):
        """True when the peer closed its side (readable with nothing to read)."""
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
            if not r:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def wait(self, seconds):
        """Sleeps, watching the connection; False when the client went away."""
        deadline = time.monotonic() + seconds
        while True:
            if self.client_gone():
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, 0.01))

    def count(self):
        with STATE.lock:
            STATE.counts[self.path] = STATE.counts.get(self.path, 0) + 1

    # ------------------------------------------------------------------ routes
    def do_GET(self):
        self.count()
        cfg = STATE.config
        path = self.path.split("?")[0]
        if path in ("/health", "/health_generate"):
            status = cfg.get("health_status", 200)
            return self.send_json(status, {"status": "ok" if status == 200 else "unhealthy"})
        if path == "/get_load":
            return self.send_json(200, {"load": cfg.get("load", STATE.in_flight)})
        if path == "/v1/models":
            return self.send_json(200, {"object": "list", "data": [
                {"id": STATE.model, "object": "model", "created": 0, "owned_by": "fake", "root": STATE.model}]})
        if path == "/get_model_info":
            return self.send_json(200, {"model_path": STATE.model, "tokenizer_path": STATE.model,
                                        "is_generation": True})
        if path == "/get_server_info":
            return self.send_json(200, {"model_path": STATE.model, "disaggregation_mode": STATE.mode,
                                        "port": self.server.server_address[1], "fake": True})
        if path == "/_fake/requests":
            with STATE.lock:
                return self.send_json(200, {"requests": list(STATE.requests)})
        if path == "/_fake/stats":
            with STATE.lock:
                return self.send_json(200, {"counts": dict(STATE.counts), "in_flight": STATE.in_flight,
                                            "flushes": STATE.flushes})
        self.send_json(404, {"error": {"message": "no route " + path}})

    def do_POST(self):
        self.count()
        path = self.path.split("?")[0]
        try:
            body = self.body_json()
        except ValueError:
            return self.send_json(400, {"error": {"message": "bad JSON"}})
        if path == "/_fake/config":
            with STATE.lock:
                STATE.config.update(body)
            return self.send_json(200, STATE.config)
        if path == "/_fake/reset":
            STATE.reset()
            return self.send_json(200, {})
        if path == "/flush_cache":
            with STATE.lock:
                STATE.seen = []
                STATE.flushes += 1
            return self.send_json(200, {"message": "Cache flushed."})
        if path == "/v1/tokenize":
            toks = list(body.get("prompt", "").encode())
            return self.send_json(200, {"tokens": toks, "count": len(toks), "max_model_len": 2048})
        if path == "/v1/detokenize":
            return self.send_json(200, {"text": bytes(body.get("tokens", [])).decode(errors="replace")})
        if path in ("/generate", "/v1/completions", "/v1/chat/completions"):
            return self.generate(path, body)
        self.send_json(404, {"error": {"message": "no route " + path}})

    # ------------------------------------------------------------------ generation
    def generate(self, path, body):
        rec = {"path": path, "body": body, "outcome": None, "started": time.time(), "ended": None,
               "stream": bool(body.get("stream"))}
        with STATE.lock:
            STATE.requests.append(rec)
            STATE.in_flight += 1
            cfg = dict(STATE.config)
            fail = cfg.get("fail_count", 0)
            if fail:
                STATE.config["fail_count"] = fail - 1 if fail > 0 else fail
        try:
            rec["outcome"] = self.generate_inner(path, body, rec, cfg, fail != 0)
        except (BrokenPipeError, ConnectionResetError):
            rec["outcome"] = "aborted"
        finally:
            rec["ended"] = time.time()
            with STATE.lock:
                STATE.in_flight -= 1

    def generate_inner(self, path, body, rec, cfg, fail):
        if STATE.mode in ("prefill", "decode"):
            missing = [k for k in ("bootstrap_host", "bootstrap_port", "bootstrap_room") if k not in body]
            if missing:
                self.send_json(400, {"error": {"message": "missing " + ", ".join(missing)}})
                return "failed"
            rec["bootstrap_room"] = body["bootstrap_room"]
        if cfg.get("delay_ms") and not self.wait(cfg["delay_ms"] / 1000.0):
            return "aborted"
        if fail:
            status = cfg.get("fail_status", 500)
            self.send_json(status, {"error": {"message": f"injected failure {status}", "code": status}})
            return "failed"

        prompts, batch = self.prompts(path, body)
        n = self.max_tokens(path, body)
        results = []
        for p in prompts:
            b = p.encode()
            with STATE.lock:
                cached = max([common_prefix(b, s) for s in STATE.seen] or [0])
                STATE.seen.append(b)
            results.append((p, output_words(p, n), cached))
        rec["cached_tokens"] = [r[2] for r in results]
        stream = bool(body.get("stream"))
        if not stream:
            objs = [self.whole(path, body, p, words, cached) for (p, words, cached) in results]
            self.send_json(200, objs if batch and path == "/generate" else objs[0])
            return "ok"
        return self.stream(path, body, results[0], cfg)

    def prompts(self, path, body):
        if path == "/generate":
            t = body.get("text")
            if isinstance(t, list):
                return t, True
            if t is not None:
                return [t], False
            ids = body.get("input_ids") or []
            if ids and isinstance(ids[0], list):
                return [bytes(i % 256 for i in x).decode(errors="replace") for x in ids], True
            return [bytes(i % 256 for i in ids).decode(errors="replace")], False
        if path == "/v1/completions":
            p = body.get("prompt", "")
            return ([p[0]] if isinstance(p, list) else [p]), False
        msgs = body.get("messages", [])
        return [" ".join(m.get("content", "") for m in msgs if isinstance(m.get("content"), str))], False

    def max_tokens(self, path, body):
        if path == "/generate":
            return int((body.get("sampling_params") or {}).get("max_new_tokens", 8))
        return int(body.get("max_tokens") or body.get("max_completion_tokens") or 8)

    def input_logprobs(self, prompt):
        if STATE.mode == "decode":
            return [[-9.0, -1, "decode"]]
        return [[None if i == 0 else -1.0 - (b % 7) / 10.0, b, None] for i, b in enumerate(prompt.encode())]

    def meta(self, body, prompt, words, cached, done):
        m = {"id": "fake", "prompt_tokens": len(prompt.encode()), "completion_tokens": len(words),
             "cached_tokens": cached, "worker_mode": STATE.mode,
             "finish_reason": {"type": "length", "length": len(words)} if done else None}
        if body.get("return_logprob"):
            m["input_token_logprobs"] = self.input_logprobs(prompt)
            m["output_token_logprobs"] = [[-0.5, 100 + i, None] for i in range(len(words))]
        return m

    def usage(self, prompt, words, cached):
        pt = len(prompt.encode())
        return {"prompt_tokens": pt, "completion_tokens": len(words), "total_tokens": pt + len(words),
                "prompt_tokens_details": {"cached_tokens": cached}}

    def whole(self, path, body, prompt, words, cached):
        text = "".join(" " + w for w in words)
        if path == "/generate":
            return {"text": text, "meta_info": self.meta(body, prompt, words, cached, True)}
        if path == "/v1/completions":
            return {"id": "cmpl-fake", "object": "text_completion", "created": 0, "model": STATE.model,
                    "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "length"}],
                    "usage": self.usage(prompt, words, cached)}
        return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": STATE.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "logprobs": None, "finish_reason": "length"}],
                "usage": self.usage(prompt, words, cached)}

    def stream(self, path, body, result, cfg):
        prompt, words, cached = result
        interval = cfg.get("token_interval_ms", 0) / 1000.0
        die_after = cfg.get("die_after_tokens")
        self.begin_sse()
        if path == "/v1/chat/completions":
            self.event(self.chat_chunk({"role": "assistant", "content": ""}, None))
        text = ""
        for i, w in enumerate(words):
            if i > 0 and interval and not self.wait(interval):
                return "aborted"
            last = i == len(words) - 1
            text += " " + w
            if path == "/generate":
                ev = {"text": text, "meta_info": self.meta(body, prompt, words[:i + 1], cached, last), "index": 0}
            elif path == "/v1/completions":
                ev = {"id": "cmpl-fake", "object": "text_completion", "created": 0, "model": STATE.model,
                      "choices": [{"index": 0, "text": " " + w, "logprobs": None,
                                   "finish_reason": "length" if last else None}]}
            else:
                ev = self.chat_chunk({"content": " " + w}, None)
            self.event(ev)
            if die_after is not None and i + 1 >= die_after:
                os.kill(os.getpid(), signal.SIGKILL)
        if path == "/v1/chat/completions":
            self.event(self.chat_chunk({}, "length"))
        if path != "/generate" and (body.get("stream_options") or {}).get("include_usage"):
            obj = "chat.completion.chunk" if path == "/v1/chat/completions" else "text_completion"
            self.event({"id": "fake", "object": obj, "created": 0, "model": STATE.model, "choices": [],
                        "usage": self.usage(prompt, words, cached)})
        self.event("[DONE]")
        self.end_chunks()
        return "ok"

    def chat_chunk(self, delta, finish):
        return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": STATE.model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


def main():
    global STATE
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", default="regular", choices=["regular", "prefill", "decode"])
    ap.add_argument("--model", default="fake-model")
    args = ap.parse_args()
    STATE = State(args.mode, args.model)
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.request_queue_size = 256
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()

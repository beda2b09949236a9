"""`pdctl bench` (the serving benchmark) end to end.

Every check runs against a *target*: a fake SGLang worker in this process (Python,
deterministic: each request waits TTFT_S, then sends one token every ITL_S), or `pdctl serve`
on stories260K. Which one a test
uses is the one call to `fake_target` or `serve_target`; `check_run` is the same for both.

Checked, as the issue asks: with `--dataset-name random --random-range-ratio 1.0`,
`completed` equals `--num-prompts` (less the failures the fake was told to make), total
input and output tokens equal completed x the lengths, every latency is positive and
ordered (mean <= p99 <= max), the JSON line has sglang.bench_serving's keys; for the three
backends, streamed and not; failed requests are counted, not fatal; SIGINT prints the
results so far.
"""
import http.server
import socket
import socketserver

from pdctl_testlib import *

NUM_PROMPTS = 24
INPUT_LEN = 32
OUTPUT_LEN = 8
TTFT_S = 0.010  # the fake's time to first token
ITL_S = 0.002   # and between tokens
BACKENDS = ["sglang", "openai", "openai-chat"]

# sglang.bench_serving's JSON line (python/sglang/bench_serving.py, benchmark(): `result`),
# and the arrays --output-details adds (`result_details`).
SGLANG_KEYS = [
    "backend", "dataset_name", "request_rate", "max_concurrency", "sharegpt_output_len",
    "random_input_len", "random_output_len", "random_range_ratio", "duration", "completed",
    "total_input_tokens", "total_output_tokens", "total_output_tokens_retokenized",
    "request_throughput", "input_throughput", "output_throughput", "mean_e2e_latency_ms",
    "median_e2e_latency_ms", "std_e2e_latency_ms", "p99_e2e_latency_ms", "mean_ttft_ms",
    "median_ttft_ms", "std_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "median_tpot_ms",
    "std_tpot_ms", "p99_tpot_ms", "mean_itl_ms", "median_itl_ms", "std_itl_ms", "p95_itl_ms",
    "p99_itl_ms", "concurrency", "accept_length",
]
SGLANG_DETAIL_KEYS = ["input_lens", "output_lens", "ttfts", "itls", "generated_texts", "errors"]


# ----------------------------------------------------------------------------- the fake worker

class FakeWorker:
    """A fake SGLang worker: /generate, /v1/completions, /v1/chat/completions (streamed and
    not), /v1/models, /get_model_info, /get_server_info, /health. Each generated token is
    the text "x" (one byte, one token of the byte-level tokenizer).

    Generation requests are numbered in arrival order from 0 (the warmup is 0 with
    --warmup-requests 1). With fail_every=K, request n > 0 with n % K == 0 fails, in turn
    with HTTP 500, an error event in the middle of its stream (an error body when not
    streamed) and a connection closed in the middle of the answer."""

    def __init__(self, ttft_s=TTFT_S, itl_s=ITL_S, fail_every=0, fail_all=False, server_info=True):
        self.ttft_s, self.itl_s = ttft_s, itl_s
        self.fail_every, self.fail_all = fail_every, fail_all
        self.server_info = server_info  # whether it answers /get_server_info
        self.lock = threading.Lock()
        self.served = 0
        self.failed = 0
        self.models_seen = set()
        worker = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                # As real servers do: each event leaves at once, not held back by Nagle.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path == "/health":
                    return self.send_json(200, {})
                if self.path == "/v1/models":
                    return self.send_json(200, {"object": "list", "data": [
                        {"id": "fake-model", "object": "model", "root": "fake-model"}]})
                if self.path == "/get_model_info":
                    return self.send_json(200, {"model_path": "fake-model", "tokenizer_path": None,
                                                "is_generation": True})
                if self.path == "/get_server_info" and worker.server_info:
                    return self.send_json(200, {"model_path": "fake-model", "load_format": "dummy",
                                                "internal_states": [{}], "version": "fake"})
                self.send_json(404, {"error": {"message": "not found"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                if self.path not in ("/generate", "/v1/completions", "/v1/chat/completions"):
                    return self.send_json(404, {"error": {"message": "not found"}})
                with worker.lock:
                    n = worker.served
                    worker.served += 1
                    if "model" in body:
                        worker.models_seen.add(body["model"])
                    failure = worker.failure_for(n)
                    if failure:
                        worker.failed += 1
                worker.answer(self, body, failure)

            def send_json(self, status, obj, close=False):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if close:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(data)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 256

            def handle_error(self, request, client_address):
                pass  # the bench went away (interrupted, or a request it cancelled)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def failure_for(self, n):
        if self.fail_all:
            return "http"
        if self.fail_every and n > 0 and n % self.fail_every == 0:
            return ["http", "event", "drop"][(n // self.fail_every) % 3]
        return None

    def answer(self, h, body, failure):
        path = h.path
        if path == "/generate":
            tokens = body["sampling_params"]["max_new_tokens"]
        else:
            tokens = body["max_tokens"]
        stream = bool(body.get("stream"))
        if failure == "http":
            return h.send_json(500, {"error": {"message": "the fake failed this request", "code": 500}})
        if not stream:
            time.sleep(self.ttft_s + (tokens - 1) * self.itl_s)
            if failure == "drop":
                h.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{\"te")
                h.close_connection = True
                return
            if failure == "event":
                return h.send_json(200, {"error": {"message": "the fake failed mid-way"}})
            return h.send_json(200, self.whole(path, tokens))
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

        def event(obj):
            data = b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n"
            h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            h.wfile.flush()

        time.sleep(self.ttft_s)
        for k in range(1, tokens + 1):
            if k > 1:
                time.sleep(self.itl_s)
            if k == tokens // 2 and failure == "event":
                event({"error": {"message": "the fake failed mid-way", "code": 500}})
                break
            if k == tokens // 2 and failure == "drop":
                h.wfile.write(b"40\r\ndata: {\"te")  # half a chunk, then the connection goes
                h.wfile.flush()
                h.close_connection = True
                return
            event(self.chunk(path, k))
        else:
            if path != "/generate" and (body.get("stream_options") or {}).get("include_usage"):
                event({"choices": [], "usage": {"prompt_tokens": INPUT_LEN, "completion_tokens": tokens,
                                                "total_tokens": INPUT_LEN + tokens}})
        event(b"[DONE]")
        h.wfile.write(b"0\r\n\r\n")

    @staticmethod
    def chunk(path, k):
        if path == "/generate":
            return {"text": "x" * k, "meta_info": {"completion_tokens": k, "prompt_tokens": INPUT_LEN}}
        if path == "/v1/completions":
            return {"object": "text_completion", "choices": [{"index": 0, "text": "x", "finish_reason": None}]}
        return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "x"}}]}

    @staticmethod
    def whole(path, tokens):
        usage = {"prompt_tokens": INPUT_LEN, "completion_tokens": tokens, "total_tokens": INPUT_LEN + tokens}
        if path == "/generate":
            return {"text": "x" * tokens, "meta_info": {"completion_tokens": tokens}}
        if path == "/v1/completions":
            return {"object": "text_completion", "choices": [{"index": 0, "text": "x" * tokens}], "usage": usage}
        return {"object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "x" * tokens}}],
                "usage": usage}


# ----------------------------------------------------------------------------- targets

class Target:
    """Where the bench sends its requests, and what to expect of the answers."""

    def __init__(self, url, tokenizer_args, timings=None, worker=None):
        self.url = url
        self.tokenizer_args = tokenizer_args  # how the bench finds the model's tokenizer
        self.timings = timings                # (ttft_s, itl_s) lower bounds, when known
        self.worker = worker                  # the fake, when it is one

    def expected_failures(self, n):
        if not self.worker or not self.worker.fail_every:
            return 0
        return sum(1 for i in range(1, n + 1) if i % self.worker.fail_every == 0)


def fake_target(ctx, **kwargs):
    worker = FakeWorker(**kwargs)
    ctx.procs.append(_Closer(worker))
    return Target(worker.url, ["--load-format", "dummy"], timings=(worker.ttft_s, worker.itl_s), worker=worker)


def serve_target(ctx):
    """`pdctl serve` on stories260K."""
    gguf = ctx.stories_gguf()
    # stories260K has no chat template of its own; openai-chat needs one.
    proc = ctx.start("serve", "--model-path", gguf, "--chat-template", "llama-2", wait=False)

    def up():
        if not proc.alive():
            return "exited"
        try:
            status, _, _ = http_request("GET", proc.url + "/health", timeout=2)
            return "healthy" if status == 200 else None
        except OSError:
            return None
    state = wait_until(up, 120, what="pdctl serve to answer /health or exit")
    if state == "exited":
        raise CheckFailed(f"pdctl serve exited with {proc.popen.returncode}:\n{proc.log()}")
    return Target(proc.url, ["--model-path", gguf])


class _Closer:
    """Lets Context.cleanup stop the in-process fake like a process."""

    def __init__(self, worker):
        self.worker = worker
        self.name = "fake-worker"
        self.args = []

    def stop(self):
        self.worker.close()

    def log(self):
        return f"(fake worker: {self.worker.served} requests, {self.worker.failed} failed)"


# ----------------------------------------------------------------------------- running the bench

def bench_args(target, backend, stream, out_file, num_prompts=NUM_PROMPTS, extra=()):
    args = ["bench", "--backend", backend, "--base-url", target.url,
            "--dataset-name", "random", "--random-input-len", str(INPUT_LEN),
            "--random-output-len", str(OUTPUT_LEN), "--random-range-ratio", "1.0",
            "--num-prompts", str(num_prompts), "--max-concurrency", "8", "--seed", "7",
            "--output-file", out_file, "--output-details", *target.tokenizer_args, *extra]
    if backend != "sglang" and target.worker:
        args += ["--model", "fake-model"]  # (a real server is asked: /v1/models)
    if not stream:
        args.append("--disable-stream")
    return args


def table_rows(stdout):
    """The "Serving Benchmark Result" table as {label: value text}."""
    check(" Serving Benchmark Result " in stdout, "no result table in:\n" + stdout)
    rows = {}
    for line in stdout.splitlines():
        if ":" in line and not line.startswith(" "):
            label, _, value = line.partition(":")
            rows[label.strip() + ":"] = value.strip()
    return rows


def last_json_line(path):
    with open(path) as f:
        lines = [l for l in f.read().splitlines() if l.strip()]
    check(lines, f"{path} is empty")
    return json.loads(lines[-1])  # Python's json reads the Infinity sglang writes too


def check_run(ctx, target, backend, stream, num_prompts=NUM_PROMPTS):
    out_file = os.path.join(ctx.tmpdir, f"{backend}-{int(stream)}.jsonl")
    r = ctx.run(*bench_args(target, backend, stream, out_file, num_prompts), "--disable-tqdm", timeout=120)
    what = f"[{backend}, {'streamed' if stream else 'not streamed'}]"
    check_eq(r.returncode, 0, what, r.stdout, r.stderr)
    failures = target.expected_failures(num_prompts)
    completed = num_prompts - failures

    rows = table_rows(r.stdout)
    check_eq(rows["Backend:"], backend, what)
    check_eq(int(rows["Successful requests:"]), completed, what, r.stdout)
    check_eq(int(rows["Total input tokens:"]), completed * INPUT_LEN, what)
    check_eq(int(rows["Total generated tokens:"]), completed * OUTPUT_LEN, what)
    if failures:
        check_eq(int(rows["Failed requests:"]), failures, what, r.stdout)
    else:
        check("Failed requests:" not in rows, what, r.stdout)

    j = last_json_line(out_file)
    missing = [k for k in SGLANG_KEYS + SGLANG_DETAIL_KEYS if k not in j]
    check(not missing, what, "keys missing from the JSON line:", missing)
    check_eq(j["completed"], completed, what)
    check_eq(j["total_input_tokens"], completed * INPUT_LEN, what)
    check_eq(j["total_output_tokens"], completed * OUTPUT_LEN, what)
    check_eq(j["backend"], backend, what)
    check_eq(j["random_input_len"], INPUT_LEN, what)
    check_eq(j["max_concurrency"], 8, what)
    check_eq(len(j["ttfts"]), num_prompts, what)
    check_eq(sum(1 for e in j["errors"] if e), failures, what, j["errors"])
    check(j["duration"] > 0, what)
    if target.worker:
        # sglang reads /get_server_info for the sglang backend only, and does without it.
        fake_info = {"version": "fake"} if backend == "sglang" and target.worker.server_info else None
        check_eq(j["server_info"] and {"version": j["server_info"].get("version")}, fake_info, what)

    ok = [i for i, e in enumerate(j["errors"]) if not e]
    ttfts = [j["ttfts"][i] * 1000 for i in ok]
    itls = [x * 1000 for i in ok for x in j["itls"][i]]
    duration_ms = j["duration"] * 1000
    # Every latency positive and ordered; the per-request arrays give the maxima.
    check(0 < j["mean_ttft_ms"] <= j["p99_ttft_ms"] <= max(ttfts) + 1e-6, what, "TTFT", j["mean_ttft_ms"],
          j["p99_ttft_ms"], max(ttfts))
    check(0 < j["mean_e2e_latency_ms"] <= j["p99_e2e_latency_ms"] <= duration_ms, what, "E2E",
          j["mean_e2e_latency_ms"], j["p99_e2e_latency_ms"], duration_ms)
    check(j["mean_ttft_ms"] <= j["mean_e2e_latency_ms"], what, "TTFT after E2E")
    if stream:
        check(0 < j["mean_tpot_ms"] <= j["p99_tpot_ms"], what, "TPOT", j["mean_tpot_ms"], j["p99_tpot_ms"])
        check(itls and 0 < j["mean_itl_ms"] <= j["p99_itl_ms"] <= max(itls) + 1e-6, what, "ITL",
              j["mean_itl_ms"], j["p99_itl_ms"], max(itls) if itls else None)
        check_eq(float(rows["Max ITL (ms):"]), round(max(itls), 2), what)
    else:
        # The whole answer at once: TTFT is the latency, so TPOT is 0 and there are no ITLs.
        check_eq(itls, [], what, "ITLs without a stream")
        check_eq(j["mean_tpot_ms"], 0.0, what)
        check_eq(j["mean_ttft_ms"], j["mean_e2e_latency_ms"], what)
    if target.timings:
        # The fake's fixed timings bound TTFT and E2E from below: the first token cannot
        # come back sooner, nor the last. (A single ITL has no such bound: a late read of
        # one token shortens the gap to the next.)
        ttft_s, itl_s = target.timings
        check(min(ttfts) >= ttft_s * 1000, what, "TTFT below the fake's", min(ttfts))
        if stream:
            for i in ok:
                check_eq(len(j["itls"][i]), OUTPUT_LEN - 1, what, "ITLs of request", i)
        check(j["mean_e2e_latency_ms"] >= (ttft_s + (OUTPUT_LEN - 1) * itl_s) * 1000, what)
        check_eq(j["generated_texts"][ok[0]], "x" * OUTPUT_LEN, what)
    return j


# ----------------------------------------------------------------------------- tests

@test
def fake_all_backends_streamed_and_not(ctx):
    target = fake_target(ctx)
    for backend in BACKENDS:
        for stream in (True, False):
            check_run(ctx, target, backend, stream)
    check_eq(target.worker.models_seen, {"fake-model"})


@test
def fake_failed_requests_are_counted_not_fatal(ctx):
    # Every 4th request fails: 6 of 24 (2 each of HTTP 500, an error event, a dropped
    # connection). This fake has no /get_server_info either.
    target = fake_target(ctx, fail_every=4, server_info=False)
    check_run(ctx, target, "sglang", True)
    target.worker.served = 0
    check_run(ctx, target, "openai-chat", False)


@test
def fake_warmup_failure_stops_the_run(ctx):
    target = fake_target(ctx, fail_all=True)
    out_file = os.path.join(ctx.tmpdir, "w.jsonl")
    r = ctx.run(*bench_args(target, "sglang", True, out_file), "--warmup-requests", "2", timeout=60)
    check_eq(r.returncode, 1, r.stdout, r.stderr)
    check("Warmup failed" in r.stderr, r.stderr)
    check_eq(target.worker.served, 2)
    check(not os.path.exists(out_file))


@test
def fake_discovery_model_and_tokenizer_from_the_server(ctx):
    # No --model and no tokenizer flag: the model comes from /v1/models, the tokenizer from
    # /get_server_info (a dummy model: byte-level).
    target = fake_target(ctx)
    out_file = os.path.join(ctx.tmpdir, "d.jsonl")
    args = ["bench", "--backend", "openai", "--base-url", target.url, "--dataset-name", "random",
            "--random-input-len", str(INPUT_LEN), "--random-output-len", str(OUTPUT_LEN),
            "--random-range-ratio", "1.0", "--num-prompts", "6", "--output-file", out_file,
            "--disable-tqdm"]
    r = ctx.run(*args, timeout=60)
    check_eq(r.returncode, 0, r.stdout, r.stderr)
    check("using the server's model 'fake-model'" in r.stderr, r.stderr)
    check("byte-level (the server runs a dummy model)" in r.stderr, r.stderr)
    check_eq(target.worker.models_seen, {"fake-model"})
    check_eq(last_json_line(out_file)["completed"], 6)
    # Nothing listens: the run stops before sending, saying what to pass.
    r = ctx.run("bench", "--base-url", f"http://127.0.0.1:{free_port()}", "--num-prompts", "2", timeout=60)
    check_eq(r.returncode, 1, r.stderr)
    check("--tokenizer" in r.stderr, r.stderr)


@test
def fake_sigint_prints_the_results_so_far(ctx):
    # 200 requests of ~0.2 s, two at a time: ~20 s unless interrupted after a few.
    target = fake_target(ctx, ttft_s=0.05, itl_s=0.02)
    out_file = os.path.join(ctx.tmpdir, "i.jsonl")
    args = bench_args(target, "sglang", True, out_file, num_prompts=200)
    args[args.index("--max-concurrency") + 1] = "2"
    p = subprocess.Popen([ctx.pdctl, *args, "--disable-tqdm"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        wait_until(lambda: target.worker.served >= 7 or p.poll() is not None, 30,
                   what="a few requests to be served")
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    check_eq(p.returncode, 130, stdout, stderr)
    check("interrupted" in stderr, stderr)
    rows = table_rows(stdout)
    completed = int(rows["Successful requests:"])
    check(3 <= completed < 200, stdout)
    check_eq(int(rows["Total input tokens:"]), completed * INPUT_LEN, stdout)
    check(float(rows["Mean TTFT (ms):"]) >= 50 * 0.99, stdout)
    check(not os.path.exists(out_file), "an interrupted run appends no JSON line")


@test
def serve_stories260k_all_backends(ctx):
    # The same checks against `pdctl serve` on stories260K, once it serves (issue 5).
    target = serve_target(ctx)
    for backend in BACKENDS:
        for stream in (True, False):
            check_run(ctx, target, backend, stream)


if __name__ == "__main__":
    run_tests()

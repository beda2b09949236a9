"""`pdctl serve`: the worker API on real models, end to end over HTTP.

- greedy /generate (ids and text) and /v1/completions reproduce llama.cpp's goldens on
  stories260K (GGUF, and the HF directory with --skip-tokenizer-init);
- streamed and non-streamed results are identical; 32 concurrent requests give the same
  tokens as one at a time; a repeated prompt reports cached_tokens > 0 and the same output;
- every error path answers its status with an OpenAI error body, and /health still answers;
- a client that disconnects mid-stream frees its pages (seen in /get_load);
- /health is 503 until the model is loaded; SIGTERM lets requests in flight finish, exit 0;
  a broken model file is a start-up error naming the file.

Skipped (exit 77) when ../shared/models is absent.
"""

import socket

from pdctl_testlib import *  # noqa: F401,F403


def start_serve(ctx, *args, name=None, env=None, timeout=120):
    """Starts `pdctl serve ARGS` and waits for /health 200."""
    p = ctx.start("serve", *args, name=name, env=env, wait=False)

    def up():
        if not p.alive():
            return "exited"
        try:
            status, _, _ = http_request("GET", p.url + "/health", timeout=2)
            return "healthy" if status == 200 else None
        except OSError:
            return None

    state = wait_until(up, timeout, what=f"pdctl serve at {p.url} to answer /health or exit")
    if state == "exited":
        raise CheckFailed(f"pdctl serve exited with {p.popen.returncode}:\n{p.log()}")
    return p


def generate(url, body, timeout=120):
    status, j = http_json("POST", url + "/generate", body, timeout=timeout)
    check(status == 200, status, j)
    return j


def check_error(status, body, expected, *what):
    check_eq(status, expected, *what, body)
    check(isinstance(body, dict) and isinstance(body.get("error"), dict), "an OpenAI error object:", body, *what)
    check(isinstance(body["error"].get("message"), str), body)
    check(isinstance(body["error"].get("type"), str), body)


def llama_dummy_dir(ctx, name, vocab, hidden, layers, heads, kv_heads, ffn, context, tie=True, dtype="float32"):
    """A directory with a small Llama config.json (for --load-format dummy)."""
    d = os.path.join(ctx.tmpdir, name)
    os.makedirs(d, exist_ok=True)
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab,
        "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "intermediate_size": ffn, "max_position_embeddings": context,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": tie, "torch_dtype": dtype,
        "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
    }
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f)
    return d


# ----------------------------------------------------------------------------- goldens

@test
def goldens_generate_and_completions(ctx):
    gguf = ctx.stories_gguf()
    golden = ctx.golden()
    w = start_serve(ctx, "--model-path", gguf)
    for g in golden:
        n = len(g["completion_tokens"])
        by_ids = generate(w.url, {"input_ids": g["prompt_tokens"],
                                  "sampling_params": {"temperature": 0, "max_new_tokens": n}})
        check_eq(by_ids["output_ids"], g["completion_tokens"], "ids in:", g["prompt"])
        check_eq(by_ids["text"], g["text"], "text of ids in:", g["prompt"])
        check_eq(by_ids["meta_info"]["prompt_tokens"], len(g["prompt_tokens"]))
        check_eq(by_ids["meta_info"]["completion_tokens"], n)
        check_eq(by_ids["meta_info"]["finish_reason"]["type"], "length")
        by_text = generate(w.url, {"text": g["prompt"], "sampling_params": {"temperature": 0, "max_new_tokens": n}})
        check_eq(by_text["output_ids"], g["completion_tokens"], "text in:", g["prompt"])
        status, c = http_json("POST", w.url + "/v1/completions",
                              {"model": gguf, "prompt": g["prompt"], "max_tokens": n, "temperature": 0})
        check(status == 200, c)
        check_eq(c["choices"][0]["text"], g["text"], "completions:", g["prompt"])
        check_eq(c["usage"]["completion_tokens"], n)
        check_eq(c["usage"]["prompt_tokens"], len(g["prompt_tokens"]))


@test
def goldens_hf_directory_ids_only(ctx):
    hf = ctx.stories_hf()
    golden = ctx.golden()
    w = start_serve(ctx, "--model-path", hf, "--skip-tokenizer-init")
    for g in golden[:3]:
        n = len(g["completion_tokens"])
        out = generate(w.url, {"input_ids": g["prompt_tokens"],
                               "sampling_params": {"temperature": 0, "max_new_tokens": n}})
        check_eq(out["output_ids"], g["completion_tokens"], g["prompt"])
        check("text" not in out, "no text without a tokenizer:", out)
    status, body = http_json("POST", w.url + "/generate", {"text": "Once"})
    check_error(status, body, 400, "text with --skip-tokenizer-init")
    check("--skip-tokenizer-init" in body["error"]["message"], body)


# ----------------------------------------------------------------------------- streaming, concurrency, cache

@test
def streamed_equals_non_streamed(ctx):
    gguf = ctx.stories_gguf()
    w = start_serve(ctx, "--model-path", gguf)
    for prompt in ("Once upon a time", "Tom was sad because"):
        body = {"text": prompt, "sampling_params": {"temperature": 0, "max_new_tokens": 40}}
        whole = generate(w.url, body)
        status, events = sse_events("POST", w.url + "/generate", dict(body, stream=True))
        check_eq(status, 200)
        check_eq(events[-1], "[DONE]")
        last = events[-2]
        check_eq(last["text"], whole["text"], prompt)
        check_eq(last["output_ids"], whole["output_ids"], prompt)
        check_eq(last["meta_info"]["finish_reason"], whole["meta_info"]["finish_reason"])
        counts = [e["meta_info"]["completion_tokens"] for e in events[:-1]]
        check(counts == sorted(counts), "completion_tokens grow:", counts)

        cbody = {"prompt": prompt, "max_tokens": 40, "temperature": 0}
        _, cwhole = http_json("POST", w.url + "/v1/completions", cbody)
        status, cev = sse_events("POST", w.url + "/v1/completions",
                                 dict(cbody, stream=True, stream_options={"include_usage": True}))
        check_eq(status, 200)
        text = "".join(e["choices"][0]["text"] for e in cev[:-1] if e["choices"])
        check_eq(text, cwhole["choices"][0]["text"], prompt)
        check_eq(cev[-2]["usage"], cwhole["usage"])


@test
def concurrent_equals_sequential(ctx):
    gguf = ctx.stories_gguf()
    golden = ctx.golden()
    w = start_serve(ctx, "--model-path", gguf)
    bodies = []
    for i in range(32):
        g = golden[i % len(golden)]
        bodies.append({"input_ids": g["prompt_tokens"][: 2 + i % (len(g["prompt_tokens"]) - 1)],
                       "sampling_params": {"temperature": 0, "max_new_tokens": 24}})
    sequential = [generate(w.url, b)["output_ids"] for b in bodies]
    concurrent = parallel(lambda b: generate(w.url, b)["output_ids"], bodies, workers=32)
    for i, (s, c) in enumerate(zip(sequential, concurrent)):
        check_eq(c, s, "request", i)


@test
def repeated_prompt_uses_the_prefix_cache(ctx):
    gguf = ctx.stories_gguf()
    g = ctx.golden()[0]
    w = start_serve(ctx, "--model-path", gguf, "--page-size", "4")
    prompt = g["prompt_tokens"] + g["completion_tokens"][:40]  # 45 tokens
    body = {"input_ids": prompt, "sampling_params": {"temperature": 0, "max_new_tokens": 16}}
    first = generate(w.url, body)
    second = generate(w.url, body)
    check_eq(second["output_ids"], first["output_ids"])
    check(second["meta_info"]["cached_tokens"] > 0, "cached_tokens:", second["meta_info"])
    status, _, raw = http_request("GET", w.url + "/metrics")
    check_eq(status, 200)
    text = raw.decode()
    for name in ("sglang:num_requests_total", "sglang:prompt_tokens_total", "sglang:generation_tokens_total",
                 "sglang:time_to_first_token_seconds_bucket", "sglang:inter_token_latency_seconds_bucket",
                 "sglang:e2e_request_latency_seconds_bucket", "sglang:num_running_reqs", "sglang:num_queue_reqs",
                 "sglang:token_usage", "sglang:cache_hit_rate"):
        check(name in text, name, "missing from /metrics")


# ----------------------------------------------------------------------------- info, tokenizer and admin routes

@test
def info_tokenize_and_admin_routes(ctx):
    gguf = ctx.stories_gguf()
    g = ctx.golden()[0]
    w = start_serve(ctx, "--model-path", gguf, "--served-model-name", "stories")
    url = w.url

    # Tokenizer round trip, under both paths; ids as the GGUF tokenizer gives them (BOS first).
    for prefix in ("/v1", ""):
        status, t = http_json("POST", url + prefix + "/tokenize", {"prompt": g["prompt"]})
        check_eq(status, 200, t)
        check_eq(t["tokens"], g["prompt_tokens"], "tokenize", prefix)
        check_eq(t["count"], len(g["prompt_tokens"]))
        check(t["max_model_len"] > 0, t)
        status, d = http_json("POST", url + prefix + "/detokenize", {"tokens": g["completion_tokens"]})
        check_eq(status, 200, d)
        check_eq(d["text"], g["text"], "detokenize", prefix)
    status, t = http_json("POST", url + "/v1/tokenize", {"prompt": g["prompt"], "add_special_tokens": False})
    check_eq(t["tokens"], g["prompt_tokens"][1:], "no BOS without add_special_tokens")
    status, body = http_json("POST", url + "/v1/detokenize", {"tokens": [1, 10 ** 7]})
    check_error(status, body, 400, "detokenize of an id outside the vocabulary")

    status, models = http_json("GET", url + "/v1/models")
    check_eq(status, 200, models)
    check_eq([m["id"] for m in models["data"]], ["stories"])
    status, info = http_json("GET", url + "/get_model_info")
    check_eq(status, 200, info)
    check_eq(info["model_path"], gguf)
    check(info["is_generation"] is True, info)
    status, server = http_json("GET", url + "/get_server_info")
    check_eq(status, 200, server)
    check(server["max_total_num_tokens"] > 0, server)
    check_eq(server["internal_states"][0]["num_running_reqs"], 0, server)
    status, load = http_json("GET", url + "/get_load")
    check_eq(status, 200, load)
    check_eq((load[0]["num_reqs"], load[0]["num_tokens"]), (0, 0), load)
    check_eq(http_request("GET", url + "/health_generate")[0], 200)

    # Sampling: unseeded samples differ (each request and sample draws with its own seed);
    # a seeded request repeats itself.
    body = {"prompt": g["prompt"], "max_tokens": 24, "n": 3, "temperature": 1.5}
    status, c = http_json("POST", url + "/v1/completions", body)
    check_eq(status, 200, c)
    texts = [ch["text"] for ch in c["choices"]]
    check(len(set(texts)) > 1, "unseeded samples all alike:", texts)
    seeded = [http_json("POST", url + "/v1/completions", dict(body, seed=7))[1]["choices"] for _ in range(2)]
    check_eq([ch["text"] for ch in seeded[0]], [ch["text"] for ch in seeded[1]], "seeded requests repeat")

    # /flush_cache empties the prefix cache: the same prompt is no longer a hit afterwards.
    body = {"input_ids": g["prompt_tokens"] + g["completion_tokens"][:40],
            "sampling_params": {"temperature": 0, "max_new_tokens": 4}}
    generate(url, body)
    check(generate(url, body)["meta_info"]["cached_tokens"] > 0, "a hit before the flush")
    status, _, _ = http_request("POST", url + "/flush_cache")
    check_eq(status, 200)
    check_eq(generate(url, body)["meta_info"]["cached_tokens"], 0, "no hit after the flush")

    # /abort_request by rid ends a running request with finish_reason abort.
    result = {}

    def long_request():
        result["r"] = http_json("POST", url + "/generate",
                                {"text": "Once", "rid": "to-abort",
                                 "sampling_params": {"max_new_tokens": 400, "ignore_eos": True}})
    t = threading.Thread(target=long_request)
    t.start()
    wait_until(lambda: http_json("GET", url + "/get_load")[1][0]["num_reqs"] == 1, 20, what="the request to run")
    check_eq(http_request("POST", url + "/abort_request", {"rid": "to-abort"})[0], 200)
    t.join(timeout=30)
    status, out = result["r"]
    check_eq(out["meta_info"]["finish_reason"]["type"], "abort", status, out)
    check(out["meta_info"]["completion_tokens"] < 400, out["meta_info"])
    wait_until(lambda: http_json("GET", url + "/get_load")[1][0]["num_tokens"] == 0, 20, what="pages freed")
    check_eq(http_request("POST", url + "/abort_request", {})[0], 400, "abort without a rid")

    status, _, raw = http_request("GET", url + "/metrics")
    text = raw.decode()
    check("sglang:num_requests_total" in text and "sglang:num_aborted_requests_total" in text, text[:2000])


# ----------------------------------------------------------------------------- errors

@test
def error_paths_answer_json_and_leave_the_server_healthy(ctx):
    gguf = ctx.stories_gguf()
    w = start_serve(ctx, "--model-path", gguf, "--max-payload-size", "4096")
    url = w.url

    def healthy():
        status, _, _ = http_request("GET", url + "/health")
        check_eq(status, 200, "health after an error")

    cases = [
        ("POST", "/generate", b'{"text": ', 400),
        ("POST", "/v1/completions", b"[1, 2]", 400),
        ("POST", "/v1/completions", {"prompt": "a", "temperature": "warm"}, 400),
        ("POST", "/v1/completions", {"prompt": "a", "max_tokens": -4}, 400),
        ("POST", "/v1/completions", {"prompt": "a", "top_p": 7}, 400),
        ("POST", "/v1/completions", {"prompt": "a", "n": 100000}, 400),
        ("POST", "/v1/completions", {"prompt": "a", "max_tokens": 100000}, 400),
        ("POST", "/v1/completions", {"prompt": "a", "regex": "[0-9]+"}, 400),
        ("POST", "/v1/completions", {"model": "gpt-4", "prompt": "a"}, 404),
        ("POST", "/v1/chat/completions", {"messages": "hi"}, 400),
        ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}],
                                          "tools": [{"type": "function", "function": {"name": "f"}}]}, 400),
        ("POST", "/generate", {"input_ids": [1, 99999]}, 400),
        ("POST", "/generate", {"text": "a", "sampling_params": {"bogus": 1}}, 400),
        ("POST", "/generate", {"input_ids": list(range(3, 503)) + [5] * 100}, 400),
        ("GET", "/v1/no/such/route", None, 404),
        ("GET", "/generate", None, 405),
        ("DELETE", "/v1/completions", None, 405),
        ("POST", "/generate", {"text": "x" * 8000}, 413),
    ]
    for method, path, body, expected in cases:
        status, _, raw = http_request(method, url + path, body)
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw
        check_error(status, parsed, expected, method, path)
        healthy()
    _, body = http_json("POST", url + "/v1/completions", {"model": "gpt-4", "prompt": "a"})
    check_eq(body["error"].get("code"), "model_not_found")


@test
def queue_full_is_429(ctx):
    gguf = ctx.stories_gguf()
    w = start_serve(ctx, "--model-path", gguf, "--max-running-requests", "1", "--max-queued-requests", "1")
    body = {"text": "Once upon a time", "sampling_params": {"max_new_tokens": 400, "ignore_eos": True}}
    results = parallel(lambda _: http_json("POST", w.url + "/generate", body), range(6), workers=6)
    statuses = sorted(s for s, _ in results)
    check(429 in statuses, "some requests are refused with 429:", statuses)
    check(200 in statuses, "some requests are served:", statuses)
    for status, b in results:
        if status == 429:
            check_error(status, b, 429)
            check_eq(b["error"]["type"], "rate_limit_error")
    check_eq(http_request("GET", w.url + "/health")[0], 200)


# ----------------------------------------------------------------------------- disconnect, lifecycle

@test
def client_disconnect_frees_its_pages(ctx):
    w = start_serve(ctx, "--model-path", "tiny", "--load-format", "dummy", "--threads", "1")
    body = json.dumps({"text": "abc", "stream": True,
                       "sampling_params": {"max_new_tokens": 3000, "ignore_eos": True}}).encode()
    s = socket.create_connection(("127.0.0.1", w.port), timeout=30)
    s.sendall(b"POST /generate HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: "
              + str(len(body)).encode() + b"\r\n\r\n" + body)
    got = b""
    while got.count(b"data: ") < 3:
        chunk = s.recv(65536)
        check(chunk, "the stream ended early:", got[-500:])
        got += chunk
    _, load = http_json("GET", w.url + "/get_load")
    check_eq(load[0]["num_reqs"], 1, load)
    check(load[0]["num_tokens"] > 0, load)
    s.close()

    def freed():
        _, l = http_json("GET", w.url + "/get_load")
        return l[0]["num_reqs"] == 0 and l[0]["num_tokens"] == 0
    wait_until(freed, 20, what="the disconnected request's pages to be freed")
    _, metrics, raw = http_request("GET", w.url + "/metrics")
    check("sglang:num_aborted_requests_total" in raw.decode())
    check_eq(http_request("GET", w.url + "/health")[0], 200)


@test
def health_is_503_until_loaded_then_sigterm_exits_0(ctx):
    # A dummy model large enough that making its random weights takes a moment.
    d = llama_dummy_dir(ctx, "mid", vocab=32000, hidden=1024, layers=8, heads=8, kv_heads=4, ffn=4096,
                        context=2048, dtype="float16")
    p = ctx.start("serve", "--model-path", d, "--load-format", "dummy", "--threads", "1", wait=False)
    seen = []

    def ready():
        if not p.alive():
            raise CheckFailed(f"serve exited:\n{p.log()}")
        try:
            status, _, raw = http_request("GET", p.url + "/health", timeout=2)
        except OSError:
            return False
        seen.append(status)
        if status == 503:
            body = json.loads(raw)
            check("loading" in body["error"]["message"], body)
            status_g, body_g = http_json("POST", p.url + "/generate", {"text": "a"})
            check_error(status_g, body_g, 503, "generate while loading")
        return status == 200
    wait_until(ready, 120, what="serve to load the model")
    check(503 in seen, "/health answered 503 before the model was loaded:", seen[:5])

    # SIGTERM with a request in flight: it finishes, then the process exits 0.
    result = {}

    def slow():
        result["r"] = http_json("POST", p.url + "/generate",
                                {"text": "a", "sampling_params": {"max_new_tokens": 64, "ignore_eos": True}})
    t = threading.Thread(target=slow)
    t.start()
    wait_until(lambda: http_json("GET", p.url + "/get_load")[1][0]["num_reqs"] == 1, 20, what="the request to run")
    p.signal(signal.SIGTERM)
    t.join(timeout=60)
    status, body = result["r"]
    check_eq(status, 200, body)
    check_eq(body["meta_info"]["completion_tokens"], 64)
    p.popen.wait(timeout=30)
    check_eq(p.popen.returncode, 0, p.log())


@test
def broken_model_file_is_a_start_up_error(ctx):
    gguf = ctx.stories_gguf()
    broken = os.path.join(ctx.tmpdir, "broken.gguf")
    with open(gguf, "rb") as f:
        data = f.read()
    with open(broken, "wb") as f:
        f.write(data[: len(data) // 2])
    p = ctx.start("serve", "--model-path", broken, wait=False)
    p.popen.wait(timeout=60)
    log = p.log()
    check(p.popen.returncode != 0, "a broken model file must fail the start:", log)
    check("broken.gguf" in log, "the message names the file:", log)


if __name__ == "__main__":
    run_tests()

"""pdctl router in regular mode in front of real `pdctl serve` workers (the fake-worker tests
in test_router_*.py cover what real workers cannot easily be made to do):

- greedy outputs on stories260K equal llama.cpp's goldens through /generate (ids, text,
  streamed) and /v1/completions, and through the official `openai` npm client (completions
  streamed and not; chat, which has no golden, equals a worker's own answer);
- round_robin spreads requests evenly (each worker's sglang:num_requests_total);
- cache_aware sends requests sharing a long prefix to one worker (its cached_tokens show the
  hit), and spreads a burst once the loads in flight differ by more than the thresholds;
- kill -9 of a worker: a stream in flight on it ends at once with a 5xx error event (a plain
  request with retries off gets 502), new requests go to the other worker, and after
  DELETE + restart + POST /workers the restarted worker receives traffic again;
- with --api-key a request without the token gets 401.

Skipped (exit 77) when ../shared/models is absent.
"""
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pdctl_testlib import *  # noqa: E402,F403

MODEL = "stories"


# ----------------------------------------------------------------------------- the deployment

def start_serve(ctx, *args, name=None, port=None, wait=True):
    """Starts `pdctl serve ARGS` (one engine thread: the machine is shared)."""
    p = ctx.start("serve", *args, "--threads", "1", name=name, port=port, wait=False)
    if wait:
        wait_serve(p)
    return p


def wait_serve(p, timeout=120):
    def up():
        if not p.alive():
            raise CheckFailed(f"{p.name} exited with {p.popen.returncode}:\n{p.log()}")
        try:
            return http_request("GET", p.url + "/health", timeout=2)[0] == 200
        except OSError:
            return False
    wait_until(up, timeout, what=f"{p.name} at {p.url} to load its model")


def stories_workers(ctx, n=2, *args):
    """`n` serve workers on stories260K, started together (loading overlaps)."""
    gguf = ctx.stories_gguf()
    ws = [start_serve(ctx, "--model-path", gguf, "--served-model-name", MODEL, "--chat-template", "llama-2", *args,
                      name=f"serve-{i}", wait=False) for i in range(n)]
    for w in ws:
        wait_serve(w)
    return ws


def start_router(ctx, workers, *flags):
    return ctx.start("router", "--worker-urls", *[w.url for w in workers], "--health-check-interval-secs", "1",
                     *flags, health_path="/readiness")


def served(worker):
    """Generation requests the worker has finished, from its own /metrics."""
    status, _, raw = http_request("GET", worker.url + "/metrics")
    check_eq(status, 200)
    for line in raw.decode().splitlines():
        if line.startswith("sglang:num_requests_total{"):
            return int(float(line.rpartition(" ")[2]))
    raise CheckFailed("no sglang:num_requests_total in " + worker.url + "/metrics")


def router_workers(router, headers=None):
    status, body = http_json("GET", router.url + "/workers", headers=headers)
    check_eq(status, 200, body)
    return {w["url"]: w for w in body["workers"]}


def generate(url, body, headers=None, timeout=120):
    status, j = http_json("POST", url + "/generate", body, headers=headers, timeout=timeout)
    check_eq(status, 200, j)
    return j


def greedy(n, **extra):
    return dict({"temperature": 0, "max_new_tokens": n}, **extra)


# ----------------------------------------------------------------------------- outputs

@test
def goldens_through_the_router_and_the_openai_client(ctx):
    golden = ctx.golden()
    workers = stories_workers(ctx)
    router = start_router(ctx, workers, "--policy", "round_robin")
    for g in golden:
        n = len(g["completion_tokens"])
        out = generate(router.url, {"input_ids": g["prompt_tokens"], "sampling_params": greedy(n)})
        check_eq(out["output_ids"], g["completion_tokens"], "ids:", g["prompt"])
        check_eq(out["text"], g["text"], "text of ids:", g["prompt"])
        out = generate(router.url, {"text": g["prompt"], "sampling_params": greedy(n)})
        check_eq(out["output_ids"], g["completion_tokens"], "text:", g["prompt"])
        status, events = sse_events("POST", router.url + "/generate",
                                    {"text": g["prompt"], "sampling_params": greedy(n), "stream": True})
        check_eq(status, 200, events)
        check_eq(events[-1], "[DONE]")
        check_eq(events[-2]["output_ids"], g["completion_tokens"], "streamed:", g["prompt"])
        check_eq(events[-2]["text"], g["text"], "streamed:", g["prompt"])
        status, c = http_json("POST", router.url + "/v1/completions",
                              {"model": MODEL, "prompt": g["prompt"], "max_tokens": n, "temperature": 0})
        check_eq(status, 200, c)
        check_eq(c["choices"][0]["text"], g["text"], "completions:", g["prompt"])

    # The official client, through the router. Chat has no golden: it must equal what a
    # worker answers directly (round_robin sends the client's calls to both workers).
    for g in golden[:2]:
        n = len(g["completion_tokens"])
        messages = [{"role": "user", "content": g["prompt"]}]
        status, direct = http_json("POST", workers[1].url + "/v1/chat/completions",
                                   {"model": MODEL, "messages": messages, "max_tokens": n, "temperature": 0})
        check_eq(status, 200, direct)
        out = ctx.openai_client(router.url + "/v1", {"model": MODEL, "prompt": g["prompt"], "max_tokens": n,
                                                     "messages": messages})
        check_eq(out["completion"], g["text"], "npm completion:", g["prompt"])
        check_eq(out["completion_stream"], g["text"], "npm streamed completion:", g["prompt"])
        check_eq(out["chat"], direct["choices"][0]["message"]["content"], "npm chat:", g["prompt"])
        check_eq(out["chat_stream"], out["chat"], "npm streamed chat:", g["prompt"])
        check_eq(out["models"], [MODEL])


@test
def round_robin_spreads_evenly_and_the_api_key_is_required(ctx):
    g = ctx.golden()[0]
    workers = stories_workers(ctx)
    key = {"Authorization": "Bearer sesame"}
    router = start_router(ctx, workers, "--policy", "round_robin", "--api-key", "sesame")
    body = {"input_ids": g["prompt_tokens"], "sampling_params": greedy(8)}
    for headers in (None, {"Authorization": "Bearer wrong"}):
        status, err = http_json("POST", router.url + "/generate", body, headers=headers)
        check_eq(status, 401, err, headers)
        status, err = http_json("POST", router.url + "/v1/completions", {"model": MODEL, "prompt": "a"},
                                headers=headers)
        check_eq(status, 401, err, headers)
    check_eq([served(w) for w in workers], [0, 0], "refused requests reach no worker")
    for i in range(6):
        check_eq(generate(router.url, body, headers=key)["output_ids"], g["completion_tokens"][:8])
        status, events = sse_events("POST", router.url + "/generate", dict(body, stream=True), headers=key)
        check_eq((status, events[-1]), (200, "[DONE]"), events)
    check_eq([served(w) for w in workers], [6, 6], "each worker's own count")
    counts = {u: w["processed_requests"] for u, w in router_workers(router, key).items()}
    check_eq(sorted(counts.values()), [6, 6], counts)


@test
def cache_aware_keeps_a_shared_prefix_on_one_worker_within_the_load_thresholds(ctx):
    workers = stories_workers(ctx)
    # cache_aware is the default; loads in flight that differ by more than 2 are rebalanced.
    router = start_router(ctx, workers, "--balance-abs-threshold", "2", "--balance-rel-threshold", "1.0")
    prefix = "Lily and Ben went to the park. They played on the swings and the slide all day. " * 2
    cached = []
    for i in range(6):
        out = generate(router.url, {"text": prefix + f"Then number {i} came.", "sampling_params": greedy(4)})
        cached.append(out["meta_info"]["cached_tokens"])
    counts = [served(w) for w in workers]
    check_eq(sorted(counts), [0, 6], "one worker got the shared prefix:", counts)
    check_eq(cached[0], 0, cached)
    check(all(c >= 32 for c in cached[1:]), "the worker's prefix cache was hit:", cached)

    # A burst of long requests on the same prefix: the loads in flight now differ, so the
    # least loaded worker takes requests instead of the one holding the prefix.
    burst = 12
    results = parallel(lambda i: http_json("POST", router.url + "/generate",
                                           {"text": prefix + f"Burst {i}.",
                                            "sampling_params": greedy(300, ignore_eos=True)}),
                       range(burst), workers=burst)
    check(all(s == 200 for s, _ in results), [s for s, _ in results])
    after = [served(w) - c for w, c in zip(workers, counts)]
    check_eq(sum(after), burst, after)
    check(min(after) >= burst // 2 - 3, "the burst was balanced:", after)
    metrics = http_request("GET", router.url + "/metrics")[2].decode()
    check(metric_value(metrics, "sgl_router_load_balancing_events_total") > 0, "balancing events")
    check(metric_value(metrics, "sgl_router_cache_hits_total") >= 5, "cache hits")


# ----------------------------------------------------------------------------- failures

@test
def kill9_of_a_worker_then_add_it_back(ctx):
    # The tiny dummy model decodes slowly enough (one thread) to keep requests in flight.
    args = ("--model-path", "tiny", "--load-format", "dummy")
    w0 = start_serve(ctx, *args, name="serve-0", wait=False)
    w1 = start_serve(ctx, *args, name="serve-1", wait=False)
    wait_serve(w0)
    wait_serve(w1)
    router = start_router(ctx, [w0, w1], "--policy", "round_robin", "--retry-initial-backoff-ms", "10")
    # Without retries, a plain (not streamed) request that was in flight gets the 5xx itself.
    single = start_router(ctx, [w0], "--disable-retries")

    results = {}

    def stream(i):
        status, events = sse_events("POST", router.url + "/generate",
                                    {"text": f"s{i}", "stream": True,
                                     "sampling_params": {"max_new_tokens": 1000, "ignore_eos": True}})
        results[i] = (status, events, time.monotonic())

    def plain():
        status, body = http_json("POST", single.url + "/generate",
                                 {"text": "p", "sampling_params": {"max_new_tokens": 2000, "ignore_eos": True}})
        results["plain"] = (status, body, time.monotonic())

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(2)] + [threading.Thread(target=plain)]
    for t in threads:
        t.start()
    running = lambda w: http_json("GET", w.url + "/get_load")[1][0]["num_reqs"]  # noqa: E731
    wait_until(lambda: running(w0) == 2 and running(w1) == 1, 30, what="one stream per worker and the plain one")
    w0.kill9()
    killed_at = time.monotonic()
    for t in threads:
        t.join(90)

    streams = [results[0], results[1]]
    failed = [r for r in streams if "error" in r[1][-1]]
    check_eq(len(failed), 1, "one stream failed:", [r[:2] for r in streams], results["plain"][:2])
    status, events, ended = failed[0]
    check_eq(status, 200, "the stream had begun")
    check(events[-1]["error"]["code"] >= 500, events[-1])
    check(ended - killed_at < 2.0, f"the failed stream ended {ended - killed_at:.2f}s after the kill")
    ok = [r for r in streams if r[1][-1] == "[DONE]"]
    check_eq(len(ok), 1, "the stream on the other worker finished")
    check_eq(ok[0][1][-2]["meta_info"]["completion_tokens"], 1000)
    status, body, ended = results["plain"]
    check_eq(status, 502, body)
    check(ended - killed_at < 2.0, f"the plain request failed {ended - killed_at:.2f}s after the kill")

    # New requests all succeed, on the other worker.
    before = served(w1)
    for i in range(6):
        generate(router.url, {"text": f"after{i}", "sampling_params": {"max_new_tokens": 4}})
    check_eq(served(w1) - before, 6)
    check(not router_workers(router)[w0.url]["is_healthy"], "the killed worker is unhealthy")

    # The worker restarts on the same address and is added back.
    status, body = http_json("DELETE", router.url + "/workers/" + w0.url)
    check_eq(status, 200, body)
    w0b = start_serve(ctx, *args, name="serve-0-again", port=w0.port)
    status, body = http_json("POST", router.url + "/workers", {"url": w0b.url, "worker_type": "regular"})
    check_eq(status, 200, body)
    check(body["success"] and body["worker"]["is_healthy"], body)
    for i in range(4):
        generate(router.url, {"text": f"back{i}", "sampling_params": {"max_new_tokens": 4}})
    check_eq(served(w0b), 2, "round_robin sends it half of the traffic again")


if __name__ == "__main__":
    run_tests()

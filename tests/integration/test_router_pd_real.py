"""pdctl router --pd-disaggregation in front of REAL workers: 2 `pdctl prefill` and 2 `pdctl
decode` on stories260K (GGUF), KV over UCX shared memory, all on loopback (test_router_pd.py
covers the same routes against fake workers, and what real workers cannot easily be made to do):

- greedy outputs equal llama.cpp's goldens through /generate (ids and text, streamed and not)
  and /v1/completions, and through the official `openai` npm client (completions streamed and
  not; chat, which has no golden, streamed equals not streamed);
- round_robin for both phases spreads requests evenly over both prefill and both decode
  workers (each worker's own sglang:num_requests_total);
- cache_aware for the prefill phase sends requests sharing a long prefix to one prefill
  worker: its own sglang:cached_tokens_total shows the prefix-cache hits, the other prefill
  worker gets nothing, and the load never crossed the balance thresholds.

Skipped (exit 77) when ../shared/models is absent.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pdctl_testlib import *  # noqa: E402,F403

MODEL = "stories"
SHM = "posix,cma,self"  # UCX transports, as test_pd.py uses them


# ----------------------------------------------------------------------------- the deployment

def start_workers(ctx, n_prefill=2, n_decode=2):
    """Starts the prefill and decode workers together (model loading overlaps) and waits for
    all; returns ([prefill], [decode]), each prefill with the .bootstrap_port it listens on."""
    gguf = ctx.stories_gguf()
    common = ["--model-path", gguf, "--served-model-name", MODEL, "--chat-template", "llama-2", "--threads", "1"]
    env = {"UCX_TLS": SHM}
    prefills = []
    for i in range(n_prefill):
        bp = free_port()
        p = ctx.start("prefill", *common, "--disaggregation-bootstrap-port", str(bp), env=env,
                      name=f"prefill-{i}", wait=False)
        p.bootstrap_port = bp
        prefills.append(p)
    decodes = [ctx.start("decode", *common, env=env, name=f"decode-{i}", wait=False) for i in range(n_decode)]
    for w in prefills + decodes:
        w.wait_healthy("/health", 120)
    return prefills, decodes


def start_router(ctx, prefills, decodes, *flags):
    args = ["--pd-disaggregation"]
    for p in prefills:
        args += ["--prefill", p.url, str(p.bootstrap_port)]
    args += ["--decode"] + [d.url for d in decodes]
    return ctx.start("router", *args, "--health-check-interval-secs", "1", *flags, health_path="/readiness")


def counter(worker, name):
    """One counter from the worker's own /metrics (its single labelled sample)."""
    status, _, raw = http_request("GET", worker.url + "/metrics")
    check_eq(status, 200)
    for line in raw.decode().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return int(float(line.rpartition(" ")[2]))
    raise CheckFailed(f"no {name} in {worker.url}/metrics")


def served(worker):
    return counter(worker, "sglang:num_requests_total")


def idle(worker):
    status, j = http_json("GET", worker.url + "/get_load")
    check_eq(status, 200, j)
    return j[0]["num_reqs"] == 0 and j[0]["num_tokens"] == 0


def generate(router, body, timeout=120):
    status, j = http_json("POST", router.url + "/generate", body, timeout=timeout)
    check_eq(status, 200, j)
    return j


def greedy(n, **extra):
    return dict({"temperature": 0, "max_new_tokens": n}, **extra)


# ----------------------------------------------------------------------------- outputs

@test
def goldens_through_the_router_and_the_openai_client(ctx):
    golden = ctx.golden()
    prefills, decodes = start_workers(ctx)
    router = start_router(ctx, prefills, decodes, "--policy", "round_robin")
    for g in golden:
        n = len(g["completion_tokens"])
        out = generate(router, {"input_ids": g["prompt_tokens"], "sampling_params": greedy(n)})
        check_eq(out["output_ids"], g["completion_tokens"], "ids:", g["prompt"])
        check_eq(out["text"], g["text"], "text of ids:", g["prompt"])
        out = generate(router, {"text": g["prompt"], "sampling_params": greedy(n)})
        check_eq(out["output_ids"], g["completion_tokens"], "text:", g["prompt"])
        check_eq(out["text"], g["text"], "text:", g["prompt"])
        for body in ({"text": g["prompt"]}, {"input_ids": g["prompt_tokens"]}):
            status, events = sse_events("POST", router.url + "/generate",
                                        dict(body, sampling_params=greedy(n), stream=True))
            check_eq(status, 200, events)
            check_eq(events[-1], "[DONE]", events[-2:])
            check_eq(events[-2]["output_ids"], g["completion_tokens"], "streamed:", g["prompt"])
            check_eq(events[-2]["text"], g["text"], "streamed:", g["prompt"])
        status, c = http_json("POST", router.url + "/v1/completions",
                              {"model": MODEL, "prompt": g["prompt"], "max_tokens": n, "temperature": 0})
        check_eq(status, 200, c)
        check_eq(c["choices"][0]["text"], g["text"], "completions:", g["prompt"])

    # The official client, through the router (round_robin sends its calls to every worker).
    for g in golden[:2]:
        n = len(g["completion_tokens"])
        out = ctx.openai_client(router.url + "/v1", {"model": MODEL, "prompt": g["prompt"], "max_tokens": n,
                                                     "messages": [{"role": "user", "content": g["prompt"]}]})
        check_eq(out["completion"], g["text"], "npm completion:", g["prompt"])
        check_eq(out["completion_stream"], g["text"], "npm streamed completion:", g["prompt"])
        check(out["chat"], "npm chat answered:", out)
        check_eq(out["chat_stream"], out["chat"], "npm streamed chat:", g["prompt"])
        check_eq(out["models"], [MODEL])
    for w in prefills + decodes:
        check(served(w) > 0, w.name, "took part")
    wait_until(lambda: all(idle(w) for w in prefills + decodes), 10, what="every worker's /get_load back to zero")


# ----------------------------------------------------------------------------- policies

@test
def round_robin_spreads_evenly_over_both_phases(ctx):
    g = ctx.golden()[1]
    prefills, decodes = start_workers(ctx)
    router = start_router(ctx, prefills, decodes, "--prefill-policy", "round_robin", "--decode-policy", "round_robin")
    body = {"input_ids": g["prompt_tokens"], "sampling_params": greedy(8)}
    for i in range(4):
        check_eq(generate(router, body)["output_ids"], g["completion_tokens"][:8])
        status, events = sse_events("POST", router.url + "/generate", dict(body, stream=True))
        check_eq((status, events[-1]), (200, "[DONE]"), events[-2:])
        check_eq(events[-2]["output_ids"], g["completion_tokens"][:8])
    check_eq([served(w) for w in prefills], [4, 4], "each prefill worker's own count")
    check_eq([served(w) for w in decodes], [4, 4], "each decode worker's own count")
    status, body = http_json("GET", router.url + "/workers")
    check_eq(status, 200, body)
    counts = {w["url"]: w["processed_requests"] for w in body["workers"]}
    check_eq([counts[w.url] for w in prefills + decodes], [4, 4, 4, 4], counts)


@test
def cache_aware_keeps_a_shared_prefix_on_one_prefill_worker(ctx):
    prefills, decodes = start_workers(ctx)
    router = start_router(ctx, prefills, decodes, "--prefill-policy", "cache_aware", "--decode-policy", "round_robin")
    prefix = "Lily and Ben went to the park. They played on the swings and the slide all day. " * 3
    prompt_tokens = []
    for i in range(6):
        out = generate(router, {"text": prefix + f"Then number {i} came.", "sampling_params": greedy(4)})
        prompt_tokens.append(out["meta_info"]["prompt_tokens"])
    counts = [served(w) for w in prefills]
    check_eq(sorted(counts), [0, 6], "one prefill worker got every request sharing the prefix:", counts)
    check_eq([served(w) for w in decodes], [3, 3], "decode stays round_robin")
    hot, cold = (prefills[0], prefills[1]) if counts[0] == 6 else (prefills[1], prefills[0])
    # The prefix is over 60 tokens: from the second request on, the prefill worker holding it
    # had it in its prefix cache (at least 5 hits of 48 tokens, whatever the page rounding).
    check(min(prompt_tokens) > 60, prompt_tokens)
    cached = counter(hot, "sglang:cached_tokens_total")
    check(cached >= 5 * 48, "the prefill worker's prefix cache was hit:", cached)
    check_eq(counter(cold, "sglang:cached_tokens_total"), 0)
    # Sequential requests: the loads never differed by more than the thresholds, so the
    # cache decided every time.
    metrics = http_request("GET", router.url + "/metrics")[2].decode()
    check_eq(metric_value(metrics, "sgl_router_load_balancing_events_total"), 0.0, "no load balancing")
    check(metric_value(metrics, "sgl_router_cache_hits_total") >= 5, "cache hits")
    wait_until(lambda: all(idle(w) for w in prefills + decodes), 10, what="every worker's /get_load back to zero")


if __name__ == "__main__":
    run_tests()

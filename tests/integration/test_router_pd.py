"""pdctl router in PD mode in front of 2 prefill and 2 decode workers: greedy outputs through
/generate and through the official `openai` npm client (streamed and not), round_robin's
even spread, cache_aware's prefix affinity.

Until `pdctl prefill` / `pdctl decode` land, fake_worker.py stands in for them. Two
functions below are all that changes then: `start_workers` (start the real workers on
stories260K) and `expected_text` (the goldens). Every check goes through the router.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pdctl_testlib import *  # noqa: E402,F403
import fake_worker  # noqa: E402

N_TOKENS = 16
PROMPTS = ["Once upon a time", "The cat sat on the mat", "Lily and Ben went to the park. They"]
MODEL = "fake-model"


# ----------------------------------------------------------------------------- the deployment

def start_workers(ctx, n_prefill=2, n_decode=2):
    """Starts the workers; returns ([prefill Proc], [decode Proc]), each healthy, with .url,
    and each prefill with the .bootstrap_port it listens on for its decode peers. With the
    real roles this becomes, per prefill worker:
        bp = free_port()
        p = ctx.start("prefill", "--model-path", ctx.stories_gguf(),
                      "--disaggregation-bootstrap-port", str(bp), ...)
        p.bootstrap_port = bp
    """
    prefills = [ctx.start_fake_worker("prefill", MODEL, name=f"prefill-{i}") for i in range(n_prefill)]
    for p in prefills:
        p.bootstrap_port = free_port()  # the fakes only record it
    decodes = [ctx.start_fake_worker("decode", MODEL, name=f"decode-{i}") for i in range(n_decode)]
    return prefills, decodes


def expected_text(prompt, n_tokens):
    """The greedy output of `prompt` (the fake's deterministic words; the goldens with real
    workers)."""
    return "".join(" " + w for w in fake_worker.output_words(prompt, n_tokens))


def expected_chat_text(messages, n_tokens):
    return expected_text(" ".join(m["content"] for m in messages), n_tokens)


# -----------------------------------------------------------------------------

def start_router(ctx, prefills, decodes, *flags):
    args = ["--pd-disaggregation"]
    for p in prefills:
        args += ["--prefill", p.url, str(p.bootstrap_port)]
    args += ["--decode"] + [d.url for d in decodes]
    return ctx.start("router", *args, "--health-check-interval-secs", "1", *flags, health_path="/readiness")


def generate(router, prompt, n=N_TOKENS, **extra):
    body = {"text": prompt, "sampling_params": {"max_new_tokens": n, "temperature": 0}}
    body.update(extra)
    return http_json("POST", router.url + "/generate", body)


def stream_text(events):
    """A /generate stream's text: SGLang's events carry the text so far (cumulative);
    incremental events are accepted too."""
    texts = [e["text"] for e in events if isinstance(e, dict)]
    if not texts:
        return None
    return texts[-1] if all(texts[-1].startswith(t) for t in texts) else "".join(texts)


def processed(router):
    status, body = http_json("GET", router.url + "/workers")
    check_eq(status, 200, body)
    return {w["url"]: w["processed_requests"] for w in body["workers"]}


@test
def generate_outputs_equal_the_expected_ones(ctx):
    prefills, decodes = start_workers(ctx)
    router = start_router(ctx, prefills, decodes)
    for prompt in PROMPTS:
        status, body = generate(router, prompt)
        check_eq(status, 200, body)
        check_eq(body["text"], expected_text(prompt, N_TOKENS), prompt)
        status, events = sse_events("POST", router.url + "/generate",
                                    {"text": prompt, "sampling_params": {"max_new_tokens": N_TOKENS, "temperature": 0},
                                     "stream": True})
        check_eq(status, 200, events)
        check_eq(events[-1], "[DONE]", events)
        check_eq(stream_text(events), expected_text(prompt, N_TOKENS), prompt)
    # A batch: one response per prompt, in order.
    status, body = http_json("POST", router.url + "/generate",
                             {"text": PROMPTS[:2], "sampling_params": {"max_new_tokens": 4, "temperature": 0}})
    check_eq(status, 200, body)
    check_eq([b["text"] for b in body], [expected_text(p, 4) for p in PROMPTS[:2]])


@test
def openai_npm_client_gets_the_expected_outputs(ctx):
    prefills, decodes = start_workers(ctx)
    router = start_router(ctx, prefills, decodes)
    messages = [{"role": "user", "content": PROMPTS[0]}]
    out = ctx.openai_client(router.url + "/v1", {"model": MODEL, "prompt": PROMPTS[1], "max_tokens": N_TOKENS,
                                                 "messages": messages})
    check_eq(out["completion"], expected_text(PROMPTS[1], N_TOKENS))
    check_eq(out["completion_stream"], out["completion"], "streamed completion")
    check(out["chunks"]["completion_stream"] >= 2, out)
    check_eq(out["chat"], expected_chat_text(messages, N_TOKENS))
    check_eq(out["chat_stream"], out["chat"], "streamed chat")
    check(out["chunks"]["chat_stream"] >= 2, out)
    check(MODEL in out["models"], out)


@test
def round_robin_spreads_requests_evenly(ctx):
    prefills, decodes = start_workers(ctx)
    router = start_router(ctx, prefills, decodes, "--policy", "round_robin")
    for i in range(8):
        status, body = generate(router, f"request {i}", n=2)
        check_eq(status, 200, body)
    counts = processed(router)
    for w in prefills + decodes:
        check_eq(counts[w.url], 4, w.name, counts)


@test
def cache_aware_sends_a_shared_prefix_to_one_prefill_worker(ctx):
    prefills, decodes = start_workers(ctx)
    router = start_router(ctx, prefills, decodes, "--policy", "cache_aware")
    prefix = "Once upon a time, in a small village at the edge of a big green forest, there lived " * 2
    cached = []
    for i in range(6):
        status, body = generate(router, prefix + f"child number {i}.", n=4)
        check_eq(status, 200, body)
        cached.append(body["meta_info"]["cached_tokens"])
    counts = processed(router)
    by_prefill = sorted(counts[p.url] for p in prefills)
    check_eq(by_prefill, [0, 6], "one prefill worker got every request sharing the prefix", counts)
    # From the second request on, the worker had the prefix cached.
    check(cached[0] < len(prefix), cached)
    check(all(c >= len(prefix) for c in cached[1:]), "cached_tokens", cached)
    # Sequential requests: the load never passed --balance-abs-threshold (64), so the cache
    # decided every time; an unrelated text goes to the worker with the smaller tree.
    text = http_request("GET", router.url + "/metrics")[2].decode()
    check_eq(metric_value(text, "sgl_router_load_balancing_events_total"), 0.0, "no load balancing")
    check(metric_value(text, "sgl_router_cache_hits_total") >= 10.0, "prefill and decode hits", text)
    status, body = generate(router, "Zebras do not share that prefix at all", n=2)
    check_eq(status, 200, body)
    counts = processed(router)
    check_eq(sorted(counts[p.url] for p in prefills), [1, 6], counts)


if __name__ == "__main__":
    run_tests()

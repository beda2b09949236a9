"""pdctl router in regular mode in front of 2 colocated workers: greedy outputs through
/generate, the OpenAI routes and the official `openai` npm client (streamed and not),
round_robin's even spread, cache_aware's prefix affinity, and the bytes of a body passed
through untouched.

The workers are fake_worker.py (deterministic outputs, requests it can report back);
test_router_real.py runs the same checks against real `pdctl serve` workers. Every check
goes through the router.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pdctl_testlib import *  # noqa: E402,F403
import fake_worker  # noqa: E402

N_TOKENS = 16
PROMPTS = ["Once upon a time", "The cat sat on the mat", "Tom was sad because"]
MODEL = "fake-model"


# ----------------------------------------------------------------------------- the deployment

def start_workers(ctx, n=2):
    """Starts `n` colocated workers; returns [Proc], each healthy, with .url. With the real
    role: ctx.start("serve", "--model-path", ctx.stories_gguf(), ...) per worker."""
    return [ctx.start_fake_worker("regular", MODEL, name=f"serve-{i}") for i in range(n)]


def expected_text(prompt, n_tokens):
    return "".join(" " + w for w in fake_worker.output_words(prompt, n_tokens))


def expected_chat_text(messages, n_tokens):
    return expected_text(" ".join(m["content"] for m in messages), n_tokens)


# -----------------------------------------------------------------------------

def start_router(ctx, workers, *flags):
    return ctx.start("router", "--worker-urls", *[w.url for w in workers], "--health-check-interval-secs", "1",
                     *flags, health_path="/readiness")


def processed(router):
    status, body = http_json("GET", router.url + "/workers")
    check_eq(status, 200, body)
    return {w["url"]: w["processed_requests"] for w in body["workers"]}


@test
def outputs_equal_the_expected_ones_on_every_route(ctx):
    workers = start_workers(ctx)
    router = start_router(ctx, workers)
    for prompt in PROMPTS:
        want = expected_text(prompt, N_TOKENS)
        status, body = http_json("POST", router.url + "/generate",
                                 {"text": prompt, "sampling_params": {"max_new_tokens": N_TOKENS, "temperature": 0}})
        check_eq(status, 200, body)
        check_eq(body["text"], want, prompt)
        status, body = http_json("POST", router.url + "/v1/completions",
                                 {"model": MODEL, "prompt": prompt, "max_tokens": N_TOKENS, "temperature": 0})
        check_eq(status, 200, body)
        check_eq(body["choices"][0]["text"], want)
        status, events = sse_events("POST", router.url + "/v1/completions",
                                    {"model": MODEL, "prompt": prompt, "max_tokens": N_TOKENS, "stream": True})
        check_eq(status, 200, events)
        check_eq(events[-1], "[DONE]")
        check_eq("".join(e["choices"][0]["text"] for e in events[:-1]), want)
        messages = [{"role": "user", "content": prompt}]
        status, events = sse_events("POST", router.url + "/v1/chat/completions",
                                    {"model": MODEL, "messages": messages, "max_tokens": N_TOKENS, "stream": True})
        check_eq(status, 200, events)
        check_eq("".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1]),
                 expected_chat_text(messages, N_TOKENS))


@test
def openai_npm_client_gets_the_expected_outputs(ctx):
    workers = start_workers(ctx)
    router = start_router(ctx, workers, "--policy", "round_robin")
    messages = [{"role": "user", "content": PROMPTS[2]}]
    out = ctx.openai_client(router.url + "/v1", {"model": MODEL, "prompt": PROMPTS[0], "max_tokens": N_TOKENS,
                                                 "messages": messages})
    check_eq(out["completion"], expected_text(PROMPTS[0], N_TOKENS))
    check_eq(out["completion_stream"], out["completion"])
    check_eq(out["chat"], expected_chat_text(messages, N_TOKENS))
    check_eq(out["chat_stream"], out["chat"])
    check(MODEL in out["models"], out)


@test
def round_robin_spreads_requests_evenly(ctx):
    workers = start_workers(ctx)
    router = start_router(ctx, workers, "--policy", "round_robin")
    for i in range(10):
        status, body = http_json("POST", router.url + "/generate", {"text": f"r{i}", "sampling_params": {"max_new_tokens": 2}})
        check_eq(status, 200, body)
    counts = processed(router)
    check_eq(sorted(counts.values()), [5, 5], counts)


@test
def cache_aware_sends_a_shared_prefix_to_one_worker(ctx):
    workers = start_workers(ctx)
    router = start_router(ctx, workers)  # cache_aware is the default
    prefix = "Lily and Ben went to the park. They played on the swings and the slide all day, " * 2
    cached = []
    for i in range(5):
        status, body = http_json("POST", router.url + "/v1/completions",
                                 {"model": MODEL, "prompt": prefix + f"then number {i}.", "max_tokens": 2})
        check_eq(status, 200, body)
        cached.append(body["usage"]["prompt_tokens_details"]["cached_tokens"])
    check_eq(sorted(processed(router).values()), [0, 5])
    check(all(c >= len(prefix) for c in cached[1:]), cached)


@test
def round_robin_forwards_the_body_untouched(ctx):
    # Without a policy that reads the text, the router does not parse the body: even one
    # that is not JSON reaches the worker as sent, and the worker's answer comes back.
    workers = start_workers(ctx, 1)
    router = start_router(ctx, workers, "--policy", "round_robin")
    raw = b'{"text": "x",   "sampling_params": {"max_new_tokens": 1}, "extra": [1, 2.50, "\\u00e9"]}'
    status, _, payload = http_request("POST", router.url + "/generate", raw, {"Content-Type": "application/json"})
    check_eq(status, 200, payload)
    got = fake_requests(workers[0])[-1]["body"]
    check_eq(got, json.loads(raw))
    status, _, payload = http_request("POST", router.url + "/generate", b"not json", {"Content-Type": "application/json"})
    check_eq(status, 400, "the worker's own 400 came back")


if __name__ == "__main__":
    run_tests()

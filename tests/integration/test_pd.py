"""`pdctl prefill` + `pdctl decode`: PD disaggregation end to end on loopback.

Requests carry the bootstrap fields as the router adds them (bootstrap_host/port/room) and
go to both workers at once; the decode worker's reply is the client's. Checked:
- greedy output on stories260K (GGUF with text and ids; the HF directory with ids) equals
  llama.cpp's goldens and `pdctl serve`'s, one request at a time and 16 concurrent, with
  chunked prefill and prompts over many small pages, over UCX shared memory and over TCP;
- the prefill worker's own reply (one token, after the transfer succeeded);
- a request without the bootstrap fields is a 400 naming what is missing; a layout
  mismatch (page size) fails the request with a message naming both values;
- once through `pdctl router --pd-disaggregation`.
Faults are in test_pd_faults.py. Skipped (77) without ../shared/models.
"""

import random
import threading

from pdctl_testlib import *  # noqa: F401,F403
from pd_testlib import *  # noqa: F401,F403

def check_goldens(ctx, p, d, bport, golden, text=True, concurrent=16):
    for g in golden:
        n = len(g["completion_tokens"])
        out = pd_generate(p, d, bport, {"input_ids": g["prompt_tokens"],
                                        "sampling_params": {"temperature": 0, "max_new_tokens": n}})
        check_eq(out["output_ids"], g["completion_tokens"], "ids in:", g["prompt"])
        if text:
            check_eq(out["text"], g["text"], "text:", g["prompt"])
            by_text = pd_generate(p, d, bport, {"text": g["prompt"],
                                                "sampling_params": {"temperature": 0, "max_new_tokens": n}})
            check_eq(by_text["output_ids"], g["completion_tokens"], "text in:", g["prompt"])
    # Concurrent: every golden prompt several times at once.
    jobs = [golden[i % len(golden)] for i in range(concurrent)]
    results = [None] * len(jobs)

    def one(i):
        g = jobs[i]
        try:
            results[i] = pd_generate(p, d, bport, {"input_ids": g["prompt_tokens"],
                                                   "sampling_params": {"temperature": 0,
                                                                       "max_new_tokens": len(g["completion_tokens"])}})
        except Exception as e:  # noqa: BLE001
            results[i] = e

    ts = [threading.Thread(target=one, args=(i,)) for i in range(len(jobs))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for g, r in zip(jobs, results):
        check(not isinstance(r, Exception), "concurrent request failed:", r)
        check_eq(r["output_ids"], g["completion_tokens"], "concurrent:", g["prompt"])
    wait_until(lambda: load_zero(d) and load_zero(p), 10, what="both workers' /get_load back to zero")


@test
def goldens_gguf_over_shared_memory(ctx):
    gguf = ctx.stories_gguf()
    golden = ctx.golden()
    # Small pages and chunks: each prompt spans several pages and chunks.
    p, d, bport = start_pd(ctx, ["--model-path", gguf], SHM, common=["--page-size", "2", "--chunked-prefill-size", "4"])
    check_goldens(ctx, p, d, bport, golden)


@test
def goldens_gguf_over_tcp_and_serve_agrees(ctx):
    gguf = ctx.stories_gguf()
    golden = ctx.golden()
    p, d, bport = start_pd(ctx, ["--model-path", gguf], TCP, common=["--page-size", "4", "--chunked-prefill-size", "8"])
    check_goldens(ctx, p, d, bport, golden, text=False)
    s = ctx.start("serve", "--model-path", gguf, timeout=120)
    # A long prompt (many pages, several chunks) and a long output: PD equals serve.
    prompt = " ".join(g["prompt"] for g in golden) * 3
    body = {"text": prompt, "sampling_params": {"temperature": 0, "max_new_tokens": 100}}
    status, want = http_json("POST", s.url + "/generate", body)
    check_eq(status, 200, want)
    got = pd_generate(p, d, bport, body)
    check(want["meta_info"]["prompt_tokens"] > 150, want["meta_info"])
    check_eq(got["output_ids"], want["output_ids"])
    check_eq(got["text"], want["text"])
    # Streaming from decode.
    b = dict(body, stream=True, bootstrap_host="127.0.0.1", bootstrap_port=bport, bootstrap_room=random.getrandbits(63))
    res = {}
    t = threading.Thread(target=lambda: res.update(p=http_json("POST", p.url + "/generate", b)))
    t.start()
    status, events = sse_events("POST", d.url + "/generate", b)
    t.join()
    check_eq(status, 200, events)
    check_eq(events[-1], "[DONE]")
    check_eq(events[-2]["output_ids"], want["output_ids"])
    check_eq(res["p"][0], 200, res["p"])


@test
def goldens_hf_ids_over_tcp(ctx):
    hf = ctx.stories_hf()
    golden = ctx.golden()
    p, d, bport = start_pd(ctx, ["--model-path", hf, "--skip-tokenizer-init"], TCP,
                           common=["--page-size", "3", "--chunked-prefill-size", "5"])
    check_goldens(ctx, p, d, bport, golden[:3], text=False, concurrent=16)


@test
def missing_bootstrap_fields_and_layout_mismatch(ctx):
    gguf = ctx.stories_gguf()
    p, d, bport = start_pd(ctx, ["--model-path", gguf], TCP, prefill_args=["--page-size", "16"],
                           decode_args=["--page-size", "8"], common=["--disaggregation-bootstrap-timeout", "3"])
    body = {"text": "Once upon a time", "sampling_params": {"temperature": 0, "max_new_tokens": 4}}
    for w in (p, d):
        status, j = http_json("POST", w.url + "/generate", body)
        check_eq(status, 400, j)
        check("bootstrap_host" in j["error"]["message"] and "bootstrap_room" in j["error"]["message"], j)
        status, j = http_json("POST", w.url + "/generate", dict(body, bootstrap_host="127.0.0.1"))
        check_eq(status, 400, j)
        check("bootstrap_room" in j["error"]["message"] and "bootstrap_host" not in j["error"]["message"], j)
    (ps, pj), (ds, dj) = pd_call(p, d, bport, body, timeout=60)
    check(ds >= 500, ds, dj)
    msg = dj["error"]["message"]
    check("page_size" in msg and "16" in msg and "8" in msg, msg)
    # Prefill's request fails too: nobody registers its room within the bootstrap timeout.
    check(ps is not None and ps >= 500, ps, pj)
    check("room" in pj["error"]["message"], pj)
    check_eq(http_request("GET", d.url + "/health")[0], 200)
    check_eq(http_request("GET", p.url + "/health")[0], 200)


@test
def through_the_router(ctx):
    gguf = ctx.stories_gguf()
    golden = ctx.golden()
    p, d, bport = start_pd(ctx, ["--model-path", gguf], SHM)
    r = ctx.start("router", "--pd-disaggregation", "--prefill", p.url, str(bport), "--decode", d.url,
                  health_path="/health", timeout=60)
    for g in golden[:3]:
        n = len(g["completion_tokens"])
        status, j = http_json("POST", r.url + "/generate", {"input_ids": g["prompt_tokens"],
                                                             "sampling_params": {"temperature": 0, "max_new_tokens": n}})
        check_eq(status, 200, j)
        check_eq(j["output_ids"], g["completion_tokens"], g["prompt"])
    wait_until(lambda: load_zero(d) and load_zero(p), 10, what="/get_load back to zero")


if __name__ == "__main__":
    run_tests()

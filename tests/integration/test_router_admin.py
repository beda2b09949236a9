"""The router's other routes: workers at run time, --api-key, admission (429 when the
queue is full, 408 after --queue-timeout-secs), bad input, deployment info and tokenizer
routes, /flush_cache, /get_loads with power_of_two, and the metrics text."""
import os
import sys
import threading
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pdctl_testlib import *  # noqa: E402,F403


def gen_body(text="hello", n=4, **extra):
    b = {"text": text, "sampling_params": {"max_new_tokens": n}}
    b.update(extra)
    return b


@test
def workers_are_added_listed_and_removed_at_run_time(ctx):
    w0 = ctx.start_fake_worker("regular", name="w0")
    router = ctx.start("router", "--worker-urls", w0.url, "--worker-startup-timeout-secs", "2",
                       "--worker-startup-check-interval", "1", health_path="/readiness")
    w1 = ctx.start_fake_worker("regular", name="w1")
    status, body = http_json("POST", router.url + "/workers", {"url": w1.url + "/", "worker_type": "regular"})
    check_eq(status, 200, body)
    check_eq(body["worker"]["url"], w1.url, "the trailing slash is dropped")
    status, body = http_json("GET", router.url + "/workers")
    check_eq(status, 200, body)
    check_eq(sorted(w["url"] for w in body["workers"]), sorted([w0.url, w1.url]))
    check_eq(body["stats"]["total_workers"], 2)
    status, body = http_json("GET", router.url + "/workers/" + urllib.parse.quote(w1.url, safe=""))
    check_eq((status, body["url"]), (200, w1.url), body)
    status, body = http_json("GET", router.url + "/list_workers")
    check_eq(sorted(body["urls"]), sorted([w0.url, w1.url]))

    # Refusals, each a JSON error; the router stays healthy.
    for spec, want in [({"url": w1.url}, 409), ({"url": "ftp://x"}, 400), ({"worker_type": "regular"}, 400),
                       ({"url": "http://127.0.0.1:1", "worker_type": "decode"}, 400),
                       ({"url": "http://127.0.0.1:1", "worker_type": "martian"}, 400)]:
        status, body = http_json("POST", router.url + "/workers", spec)
        check_eq(status, want, spec, body)
        check("message" in body["error"], body)
    status, body = http_json("POST", router.url + "/workers", b"{not json")
    check_eq(status, 400, body)
    # A worker that never passes its health check is not added.
    t0 = time.monotonic()
    status, body = http_json("POST", router.url + "/workers", {"url": f"http://127.0.0.1:{free_port()}"})
    check_eq(status, 400, body)
    check(1.5 <= time.monotonic() - t0 < 5, "waited --worker-startup-timeout-secs")

    # Removal: percent-encoded or as is; the worker gets no more traffic.
    status, body = http_json("DELETE", router.url + "/workers/" + urllib.parse.quote(w0.url, safe=""))
    check_eq(status, 200, body)
    status, body = http_json("DELETE", router.url + "/workers/" + w0.url)
    check_eq(status, 404, body)
    for i in range(3):
        status, body = http_json("POST", router.url + "/generate", gen_body(f"x{i}"))
        check_eq(status, 200, body)
    check_eq(len(fake_requests(w0)), 0)
    check_eq(len(fake_requests(w1)), 3)
    # SGLang's older query-string forms.
    status, body = http_json("POST", router.url + "/add_worker?url=" + urllib.parse.quote(w0.url, safe=""))
    check_eq(status, 200, body)
    status, body = http_json("POST", router.url + "/remove_worker?url=" + urllib.parse.quote(w0.url, safe=""))
    check_eq(status, 200, body)
    status, _ = http_json("GET", router.url + "/health")
    check_eq(status, 200)


@test
def api_key_is_required_on_api_and_admin_routes(ctx):
    w = ctx.start_fake_worker("regular")
    router = ctx.start("router", "--worker-urls", w.url, "--api-key", "s3cret", health_path="/readiness")
    good = {"Authorization": "Bearer s3cret"}
    for method, path, body in [("POST", "/generate", gen_body()), ("POST", "/v1/completions", {"prompt": "x"}),
                               ("POST", "/v1/chat/completions", {"messages": []}), ("GET", "/workers", None),
                               ("POST", "/workers", {"url": w.url}), ("DELETE", "/workers/" + w.url, None),
                               ("POST", "/flush_cache", None), ("GET", "/get_loads", None),
                               ("POST", "/v1/tokenize", {"prompt": "x"})]:
        for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic czNjcmV0"}]:
            status, hdrs, payload = http_request(method, router.url + path, body, headers)
            check_eq(status, 401, method, path, headers, payload)
            check_eq(hdrs.get("www-authenticate"), "Bearer")
            check_eq(json.loads(payload)["error"]["code"], 401)
    status, body = http_json("POST", router.url + "/generate", gen_body(), headers=good)
    check_eq(status, 200, body)
    status, body = http_json("GET", router.url + "/workers", headers=good)
    check_eq(status, 200, body)
    for path in ["/health", "/liveness", "/readiness", "/metrics", "/v1/models", "/get_model_info"]:
        status, _, _ = http_request("GET", router.url + path)
        check_eq(status, 200, path)
    check_eq(len(fake_requests(w)), 1, "refused requests never reached the worker")
    # The OpenAI client with the key.
    out = ctx.openai_client(router.url + "/v1", {"model": "fake-model", "prompt": "p", "max_tokens": 2,
                                                 "messages": [{"role": "user", "content": "m"}]}, api_key="s3cret")
    check(out["completion"], out)


@test
def a_full_queue_answers_429_and_a_long_wait_408(ctx):
    w = ctx.start_fake_worker("regular")
    router = ctx.start("router", "--worker-urls", w.url, "--max-concurrent-requests", "2", "--queue-size", "1",
                       "--queue-timeout-secs", "1", "--policy", "round_robin", health_path="/readiness")
    fake_config(w, delay_ms=1800)
    results = []
    lock = threading.Lock()

    def one(i):
        r = http_json("POST", router.url + "/generate", gen_body(f"q{i}"))
        with lock:
            results.append((time.monotonic(), r[0]))

    threads = []
    for i in range(3):
        threads.append(threading.Thread(target=one, args=(i,)))
        threads[-1].start()
        if i < 2:
            wait_until(lambda: len(fake_requests(w)) == i + 1, 5, what="request running")
    time.sleep(0.2)  # the third is queued
    t0 = time.monotonic()
    status, body = http_json("POST", router.url + "/generate", gen_body("overflow"))
    check_eq(status, 429, body)
    check(time.monotonic() - t0 < 0.5, "refused at once")
    check_eq(body["error"]["type"], "rate_limit_error", body)
    for t in threads:
        t.join(10)
    statuses = sorted(s for _, s in results)
    check_eq(statuses, [200, 200, 408], "the queued one waited past --queue-timeout-secs")
    metrics = http_request("GET", router.url + "/metrics")[2].decode()
    check_eq(metric_value(metrics, "sgl_router_admission_rejected_total", reason="queue_full"), 1.0)
    check_eq(metric_value(metrics, "sgl_router_admission_rejected_total", reason="queue_timeout"), 1.0)
    # A queued request runs once a slot frees up.
    fake_config(w, delay_ms=600)
    out = parallel(lambda i: http_json("POST", router.url + "/generate", gen_body(f"z{i}"))[0], range(3), workers=3)
    check_eq(sorted(out), [200, 200, 200])


@test
def bad_input_gets_a_json_4xx_and_the_router_stays_healthy(ctx):
    p = ctx.start_fake_worker("prefill")
    d = ctx.start_fake_worker("decode")
    router = ctx.start("router", "--pd-disaggregation", "--prefill", p.url, "--decode", d.url,
                       "--max-payload-size", "4096", health_path="/readiness")
    for raw in [b"not json", b"[1, 2]", b"", b'{"text": "unterminated']:
        status, _, payload = http_request("POST", router.url + "/generate", raw, {"Content-Type": "application/json"})
        check_eq(status, 400, raw)
        check_eq(json.loads(payload)["error"]["code"], 400)
    status, _, payload = http_request("POST", router.url + "/generate", b"x" * 5000)
    check_eq(status, 413, payload)
    status, _, _ = http_request("GET", router.url + "/generate")
    check_eq(status, 405)
    status, _, _ = http_request("GET", router.url + "/nope")
    check_eq(status, 404)
    check_eq(len(fake_requests(d)), 0)
    status, body = http_json("POST", router.url + "/generate", gen_body())
    check_eq(status, 200, body)


@test
def info_and_tokenizer_routes_come_from_a_worker(ctx):
    p = ctx.start_fake_worker("prefill", model="m-prefill")
    d = ctx.start_fake_worker("decode", model="m-decode")
    router = ctx.start("router", "--pd-disaggregation", "--prefill", p.url, "--decode", d.url,
                       health_path="/readiness")
    status, body = http_json("GET", router.url + "/v1/models")
    check_eq((status, body["data"][0]["id"]), (200, "m-prefill"), body)
    status, body = http_json("GET", router.url + "/get_model_info")
    check_eq(body["model_path"], "m-prefill")
    status, body = http_json("GET", router.url + "/get_server_info")
    check_eq((status, body["disaggregation_mode"]), (200, "prefill"), body)
    status, body = http_json("POST", router.url + "/v1/tokenize", {"prompt": "hi"})
    check_eq((status, body["tokens"]), (200, [104, 105]), body)
    status, body = http_json("POST", router.url + "/v1/detokenize", {"tokens": [104, 105]})
    check_eq((status, body["text"]), (200, "hi"), body)
    status, body = http_json("GET", router.url + "/health_generate")
    check_eq(status, 200, body)
    fake_config(d, health_status=500)
    status, body = http_json("GET", router.url + "/health_generate")
    check_eq(status, 503, body)
    status, body = http_json("GET", router.url + "/liveness")
    check_eq(status, 200, body)


@test
def flush_cache_reaches_every_worker(ctx):
    ws = [ctx.start_fake_worker("regular", name=f"w{i}") for i in range(2)]
    router = ctx.start("router", "--worker-urls", *[w.url for w in ws], health_path="/readiness")
    status, body = http_json("POST", router.url + "/flush_cache")
    check_eq(status, 200, body)
    for w in ws:
        check_eq(http_json("GET", w.url + "/_fake/stats")[1]["flushes"], 1)
    ws[1].kill9()
    status, body = http_json("POST", router.url + "/flush_cache")
    check_eq(status, 206, body)
    check_eq(body["flushed"], [ws[0].url])
    check_eq(len(body["errors"]), 1, body)


@test
def power_of_two_prefers_the_worker_reporting_less_load(ctx):
    ws = [ctx.start_fake_worker("regular", name=f"w{i}") for i in range(2)]
    fake_config(ws[0], load=50)
    fake_config(ws[1], load=3)
    router = ctx.start("router", "--worker-urls", *[w.url for w in ws], "--policy", "power_of_two",
                       "--worker-startup-check-interval", "1", health_path="/readiness")
    status, body = http_json("GET", router.url + "/get_loads")
    check_eq(status, 200, body)
    check_eq({l["worker"]: l["load"] for l in body["loads"]}, {ws[0].url: 50, ws[1].url: 3})
    check_eq((body["successful"], body["failed"]), (2, 0))
    for i in range(6):
        status, _ = http_json("POST", router.url + "/generate", gen_body(f"p{i}"))
        check_eq(status, 200)
    check_eq(len(fake_requests(ws[0])), 0)
    check_eq(len(fake_requests(ws[1])), 6)


@test
def metrics_cover_requests_errors_workers_and_policies(ctx):
    ws = [ctx.start_fake_worker("regular", name=f"w{i}") for i in range(2)]
    router = ctx.start("router", "--worker-urls", *[w.url for w in ws], "--retry-initial-backoff-ms", "5",
                       health_path="/readiness")
    fake_config(ws[0], fail_status=503, fail_count=1)
    for i in range(3):
        status, _ = http_json("POST", router.url + "/generate", gen_body("same text for the cache"))
        check_eq(status, 200)
    http_json("POST", router.url + "/v1/completions", b"{bad")
    status, hdrs, payload = http_request("GET", router.url + "/metrics")
    check_eq(status, 200)
    check(hdrs["content-type"].startswith("text/plain"), hdrs)
    text = payload.decode()
    check_eq(metric_value(text, "sgl_router_requests_total", route="/generate"), 3.0)
    check_eq(metric_value(text, "sgl_router_request_errors_total", route="/v1/completions", error_type="invalid_request"),
             1.0)
    # The first attempt went to w0 (an empty tree: the first worker) and failed; the retry
    # went to w0 again, which now held the text (SGLang's cache_aware does the same).
    check_eq(metric_value(text, "sgl_router_retries_total", route="/generate"), 1.0)
    check_eq(metric_value(text, "sgl_router_request_duration_seconds_count", route="/generate"), 3.0)
    check(metric_value(text, "sgl_router_retry_backoff_duration_seconds_count", attempt=0) >= 1.0, text)
    for w in ws:
        check_eq(metric_value(text, "sgl_router_worker_health", worker=w.url), 1.0)
        check_eq(metric_value(text, "sgl_router_worker_load", worker=w.url), 0.0)
        check_eq(metric_value(text, "sgl_router_cb_state", worker=w.url), 0.0)
    decisions = sum(metric_value(text, "sgl_router_policy_decisions_total", policy="cache_aware", worker=w.url) or 0
                    for w in ws)
    check_eq(decisions, 4.0, "3 requests + 1 retry")
    check_eq(metric_value(text, "sgl_router_policy_decisions_total", policy="cache_aware", worker=ws[0].url), 4.0)
    check_eq(metric_value(text, "sgl_router_cache_misses_total"), 1.0)
    check_eq(metric_value(text, "sgl_router_cache_hits_total"), 3.0)
    check_eq(metric_value(text, "sgl_router_active_workers"), 2.0)
    check(metric_value(text, "sgl_router_tree_size", worker=ws[0].url) is not None, text)


if __name__ == "__main__":
    run_tests()

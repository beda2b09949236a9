"""The router when workers fail: kill -9 of a decode worker (in-flight streams fail fast,
new requests go to the other one, POST /workers brings it back), the circuit breaker,
active health checks, the request timeout, waiting for workers at start-up, and graceful
shutdown."""
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pdctl_testlib import *  # noqa: E402,F403


def gen_body(text="hello", n=4, **extra):
    b = {"text": text, "sampling_params": {"max_new_tokens": n}}
    b.update(extra)
    return b


def workers_by_url(router):
    status, body = http_json("GET", router.url + "/workers")
    check_eq(status, 200, body)
    return {w["url"]: w for w in body["workers"]}


@test
def kill9_of_a_decode_worker(ctx):
    prefill = ctx.start_fake_worker("prefill", name="prefill")
    d0 = ctx.start_fake_worker("decode", name="decode-0")
    d1 = ctx.start_fake_worker("decode", name="decode-1")
    router = ctx.start("router", "--pd-disaggregation", "--prefill", prefill.url, "--decode", d0.url, d1.url,
                       "--policy", "round_robin", "--health-check-interval-secs", "1",
                       "--retry-initial-backoff-ms", "10", health_path="/readiness")
    fake_config(d0, token_interval_ms=100)
    fake_config(d1, token_interval_ms=100)

    # Two streams in flight, one on each decode worker.
    results = {}

    def stream(i):
        t0 = time.monotonic()
        status, events = sse_events("POST", router.url + "/generate", gen_body(f"s{i}", 40, stream=True))
        results[i] = (status, events, time.monotonic())

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    wait_until(lambda: len(fake_requests(d0)) == 1 and len(fake_requests(d1)) == 1, 5, what="one stream per decode")
    time.sleep(0.3)
    d0.kill9()
    killed_at = time.monotonic()
    for t in threads:
        t.join(30)
    outcomes = sorted(("error" in r[1][-1], r[2] - killed_at) for r in results.values())
    # The stream on the killed worker ended at once with an error event carrying a 5xx.
    failed = [r for r in results.values() if "error" in r[1][-1]]
    check_eq(len(failed), 1, outcomes)
    status, events, ended = failed[0]
    check_eq(status, 200)
    check(events[-1]["error"]["code"] >= 500, events[-1])
    check(ended - killed_at < 1.5, f"the failed stream ended {ended - killed_at:.2f}s after the kill")
    ok = [r for r in results.values() if r[1][-1] == "[DONE]"]
    check_eq(len(ok), 1, "the other stream finished")

    # New requests all succeed, on the other decode worker (a refused connection marks the
    # dead one unhealthy at once; the attempt that met it is retried with a new pair).
    fake_config(d1, token_interval_ms=0)
    before = len(fake_requests(d1))
    for i in range(6):
        status, body = http_json("POST", router.url + "/generate", gen_body(f"after{i}"))
        check_eq(status, 200, body)
    check_eq(len(fake_requests(d1)) - before, 6)
    check(not workers_by_url(router)[d0.url]["is_healthy"], "the killed worker is unhealthy")

    # The worker comes back on the same address: DELETE, restart, POST /workers.
    status, body = http_json("DELETE", router.url + "/workers/" + d0.url)
    check_eq(status, 200, body)
    d0b = ctx.start_fake_worker("decode", name="decode-0-again", port=d0.port)
    status, body = http_json("POST", router.url + "/workers", {"url": d0b.url, "worker_type": "decode"})
    check_eq(status, 200, body)
    check(body["success"] and body["worker"]["is_healthy"], body)
    for i in range(4):
        status, body = http_json("POST", router.url + "/generate", gen_body(f"back{i}"))
        check_eq(status, 200, body)
    check_eq(len(fake_requests(d0b)), 2, "round_robin sends it half of the traffic again")


@test
def in_flight_requests_fail_fast_with_a_5xx_without_retries(ctx):
    w0 = ctx.start_fake_worker("regular", name="w0")
    w1 = ctx.start_fake_worker("regular", name="w1")
    router = ctx.start("router", "--worker-urls", w0.url, w1.url, "--policy", "round_robin", "--disable-retries",
                       health_path="/readiness")
    fake_config(w0, delay_ms=5000)
    fake_config(w1, delay_ms=5000)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", http_json("POST", router.url + "/generate", gen_body())))
    t.start()
    wait_until(lambda: len(fake_requests(w0)) == 1, 5, what="the request reached w0")
    w0.kill9()
    killed = time.monotonic()
    t.join(10)
    status, body = out["r"]
    check_eq(status, 502, body)
    check(time.monotonic() - killed < 1.5, "failed fast")


@test
def the_circuit_breaker_stops_traffic_to_a_failing_worker(ctx):
    w0 = ctx.start_fake_worker("regular", name="w0")
    w1 = ctx.start_fake_worker("regular", name="w1")
    router = ctx.start("router", "--worker-urls", w0.url, w1.url, "--policy", "round_robin",
                       "--cb-failure-threshold", "3", "--cb-timeout-duration-secs", "60",
                       "--retry-initial-backoff-ms", "5", health_path="/readiness")
    fake_config(w0, fail_status=500, fail_count=-1)  # alive and healthy, but every request fails
    for i in range(12):
        status, body = http_json("POST", router.url + "/generate", gen_body(f"cb{i}"))
        check_eq(status, 200, body)
    check_eq(len(fake_requests(w0)), 3, "no request after the breaker opened")
    metrics = http_request("GET", router.url + "/metrics")[2].decode()
    check_eq(metric_value(metrics, "sgl_router_cb_state", worker=w0.url), 1.0)
    check_eq(metric_value(metrics, "sgl_router_cb_state", worker=w1.url), 0.0)
    check_eq(metric_value(metrics, "sgl_router_cb_state_transitions_total", worker=w0.url, **{"from": "closed", "to": "open"}),
             1.0)
    check_eq(workers_by_url(router)[w0.url]["circuit_breaker"]["state"], "open")


@test
def health_checks_take_a_worker_out_and_bring_it_back(ctx):
    w0 = ctx.start_fake_worker("regular", name="w0")
    w1 = ctx.start_fake_worker("regular", name="w1")
    router = ctx.start("router", "--worker-urls", w0.url, w1.url, "--policy", "round_robin",
                       "--health-check-interval-secs", "1", "--health-failure-threshold", "2",
                       "--health-success-threshold", "1", health_path="/readiness")
    fake_config(w0, health_status=503)
    wait_until(lambda: not workers_by_url(router)[w0.url]["is_healthy"], 6, what="w0 unhealthy")
    status, _ = http_json("GET", router.url + "/health")
    check_eq(status, 503, "SGLang's /health: every worker healthy")
    status, _ = http_json("GET", router.url + "/readiness")
    check_eq(status, 200, "one healthy worker is enough to be ready")
    before = len(fake_requests(w0))
    for i in range(4):
        status, body = http_json("POST", router.url + "/generate", gen_body(f"h{i}"))
        check_eq(status, 200, body)
    check_eq(len(fake_requests(w0)), before, "no traffic to an unhealthy worker")
    fake_config(w0, health_status=200)
    wait_until(lambda: workers_by_url(router)[w0.url]["is_healthy"], 6, what="w0 healthy again")
    for i in range(4):
        http_json("POST", router.url + "/generate", gen_body(f"h{i}"))
    check_eq(len(fake_requests(w0)), before + 2)
    metrics = http_request("GET", router.url + "/metrics")[2].decode()
    check_eq(metric_value(metrics, "sgl_router_worker_health", worker=w0.url), 1.0)


@test
def request_timeout_answers_504_and_cancels_the_worker(ctx):
    w = ctx.start_fake_worker("regular")
    router = ctx.start("router", "--worker-urls", w.url, "--request-timeout-secs", "1", health_path="/readiness")
    fake_config(w, delay_ms=4000)
    t0 = time.monotonic()
    status, body = http_json("POST", router.url + "/generate", gen_body())
    took = time.monotonic() - t0
    check_eq(status, 504, body)
    check(0.9 <= took < 2.5, took)
    wait_until(lambda: fake_requests(w)[-1]["outcome"] == "aborted", 3, what="the worker's request aborted")


@test
def readiness_waits_for_the_workers_at_start_up(ctx):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    prefill = ctx.start_fake_worker("prefill")
    router = ctx.start("router", "--pd-disaggregation", "--prefill", prefill.url, "--decode", url,
                       "--worker-startup-check-interval", "1", wait=False)
    router.wait_healthy("/liveness", 10)
    status, body = http_json("GET", router.url + "/readiness")
    check_eq(status, 503, body)
    check(url in body["waiting_for"], body)
    status, body = http_json("POST", router.url + "/generate", gen_body())
    check_eq(status, 503, body)
    ctx.start_fake_worker("decode", port=port)
    router.wait_healthy("/readiness", 10)
    status, body = http_json("POST", router.url + "/generate", gen_body())
    check_eq(status, 200, body)


@test
def start_up_fails_without_a_usable_worker(ctx):
    router = ctx.start("router", "--worker-urls", f"http://127.0.0.1:{free_port()}", "--worker-startup-timeout-secs",
                       "1", "--worker-startup-check-interval", "1", wait=False)
    router.popen.wait(timeout=10)
    check_eq(router.popen.returncode, 1, router.log())
    check("--worker-startup-timeout-secs" in router.log(), router.log())


@test
def sigterm_finishes_requests_in_flight_then_exits_0(ctx):
    w = ctx.start_fake_worker("regular")
    router = ctx.start("router", "--worker-urls", w.url, health_path="/readiness")
    fake_config(w, delay_ms=1000)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", http_json("POST", router.url + "/generate", gen_body())))
    t.start()
    wait_until(lambda: len(fake_requests(w)) == 1, 5, what="the request reached the worker")
    router.signal(signal.SIGTERM)
    time.sleep(0.2)
    try:
        http_json("GET", router.url + "/liveness", timeout=2)
        check(False, "the router still accepts connections after SIGTERM")
    except OSError:
        pass
    t.join(10)
    check_eq(out["r"][0], 200, out)
    router.popen.wait(timeout=10)
    check_eq(router.popen.returncode, 0, router.log())


if __name__ == "__main__":
    run_tests()

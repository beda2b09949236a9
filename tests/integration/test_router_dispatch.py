"""PD dispatch as the fake workers see it: the bootstrap fields, a fresh room per item and
per retry, decode's stream reaching the client before prefill has answered, logprob
merging, a failed prefill failing the request, and a client that leaves cancelling both
upstream requests."""
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pdctl_testlib import *  # noqa: E402,F403


def pd(ctx, n_prefill=1, n_decode=1, ports=None, flags=()):
    prefills = [ctx.start_fake_worker("prefill", name=f"prefill-{i}") for i in range(n_prefill)]
    decodes = [ctx.start_fake_worker("decode", name=f"decode-{i}") for i in range(n_decode)]
    args = ["--pd-disaggregation"]
    for i, p in enumerate(prefills):
        args += ["--prefill", p.url] + ([str(ports[i])] if ports and ports[i] else [])
    args += ["--decode"] + [d.url for d in decodes]
    router = ctx.start("router", *args, "--policy", "round_robin", "--retry-initial-backoff-ms", "10",
                       "--health-check-interval-secs", "1", *flags, health_path="/readiness")
    return prefills, decodes, router


def gen_body(text="hello", n=4, **extra):
    b = {"text": text, "sampling_params": {"max_new_tokens": n}}
    b.update(extra)
    return b


@test
def both_workers_get_the_bootstrap_fields_and_one_room_per_request(ctx):
    prefills, decodes, router = pd(ctx, 2, 1, ports=[9123, None])
    rooms = set()
    for i in range(4):
        status, body = http_json("POST", router.url + "/generate", gen_body(f"p{i}"))
        check_eq(status, 200, body)
    for i, p in enumerate(prefills):
        for r in fake_requests(p):
            b = r["body"]
            check_eq(b["bootstrap_host"], "127.0.0.1")
            check_eq(b["bootstrap_port"], 9123 if i == 0 else None, "prefill", i)
            check(0 <= b["bootstrap_room"] < 2 ** 63, b)
            rooms.add(b["bootstrap_room"])
    check_eq(len(rooms), 4, "a fresh room per request")
    decode_rooms = {r["body"]["bootstrap_room"] for r in fake_requests(decodes[0])}
    check_eq(decode_rooms, rooms, "decode got the same rooms as the prefills")
    # The rest of the body is the client's.
    check_eq(fake_requests(decodes[0])[0]["body"]["sampling_params"], {"max_new_tokens": 4})


@test
def a_batch_gets_one_room_per_item(ctx):
    prefills, decodes, router = pd(ctx)
    status, body = http_json("POST", router.url + "/generate", gen_body(["a", "b", "c"]))
    check_eq(status, 200, body)
    check_eq(len(body), 3)
    for w in prefills + decodes:
        b = fake_requests(w)[-1]["body"]
        check_eq(len(set(b["bootstrap_room"])), 3, b)
        check_eq(b["bootstrap_host"], ["127.0.0.1"] * 3)
        check_eq(b["bootstrap_port"], [None] * 3)
    check_eq(fake_requests(prefills[0])[-1]["body"]["bootstrap_room"],
             fake_requests(decodes[0])[-1]["body"]["bootstrap_room"])
    # Chat with n > 1 is a batch as well.
    status, body = http_json("POST", router.url + "/v1/chat/completions",
                             {"messages": [{"role": "user", "content": "hi"}], "n": 2, "max_tokens": 2})
    check_eq(status, 200, body)
    check_eq(len(fake_requests(decodes[0])[-1]["body"]["bootstrap_room"]), 2)


@test
def decode_tokens_reach_the_client_before_prefill_answers(ctx):
    prefills, decodes, router = pd(ctx)
    fake_config(prefills[0], delay_ms=1500)
    fake_config(decodes[0], token_interval_ms=20)
    conn_t0 = time.monotonic()
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", router.port, timeout=30)
    conn.request("POST", "/generate", json.dumps(gen_body("late prefill", 8, stream=True)),
                 {"Content-Type": "application/json"})
    resp = conn.getresponse()
    check_eq(resp.status, 200)
    first = resp.read1(65536)
    t_first = time.monotonic() - conn_t0
    check(first.startswith(b"data: "), first)
    check(t_first < 1.0, f"first event after {t_first:.2f}s: held back behind prefill")
    rest = first + resp.read()
    t_end = time.monotonic() - conn_t0
    check(rest.rstrip().endswith(b"data: [DONE]"), rest[-200:])
    check(t_end >= 1.4, f"the stream ended after {t_end:.2f}s, before prefill answered")
    conn.close()
    prefill_req = fake_requests(prefills[0])[-1]
    decode_req = fake_requests(decodes[0])[-1]
    check_eq(prefill_req["outcome"], "ok")
    check(decode_req["ended"] < prefill_req["ended"], "decode finished first")


@test
def logprobs_put_prefill_input_logprobs_in_front(ctx):
    prefills, decodes, router = pd(ctx)
    prompt = "abc"
    prefill_lp = [[None, 97, None], [-1.0 - (98 % 7) / 10.0, 98, None], [-1.0 - (99 % 7) / 10.0, 99, None]]
    merged = prefill_lp + [[-9.0, -1, "decode"]]
    status, body = http_json("POST", router.url + "/generate", gen_body(prompt, 3, return_logprob=True))
    check_eq(status, 200, body)
    check_eq(body["meta_info"]["input_token_logprobs"], merged)
    check_eq(body["meta_info"]["worker_mode"], "decode", "the response is decode's")
    # Streamed: every chunk that carries input logprobs gets prefill's in front; decode's
    # chunks wait for prefill's reply, then stream.
    fake_config(prefills[0], delay_ms=300)
    status, events = sse_events("POST", router.url + "/generate", gen_body(prompt, 3, return_logprob=True, stream=True))
    check_eq(status, 200, events)
    check_eq(events[-1], "[DONE]")
    check_eq(len(events), 4)
    for e in events[:-1]:
        check_eq(e["meta_info"]["input_token_logprobs"], merged)
    # Without logprobs nothing is merged.
    status, body = http_json("POST", router.url + "/generate", gen_body(prompt, 3))
    check("input_token_logprobs" not in body["meta_info"], body)


@test
def a_failed_prefill_fails_the_request_and_cancels_decode(ctx):
    prefills, decodes, router = pd(ctx, flags=("--disable-retries",))
    fake_config(prefills[0], fail_status=500, fail_count=-1)
    fake_config(decodes[0], delay_ms=3000)
    t0 = time.monotonic()
    status, body = http_json("POST", router.url + "/generate", gen_body())
    check_eq(status, 500, body)
    check("injected failure" in json.dumps(body), body)
    check(time.monotonic() - t0 < 2.0, "failed without waiting for decode")
    wait_until(lambda: fake_requests(decodes[0])[-1]["outcome"] == "aborted", 5, what="decode's request cancelled")
    # Streamed and already begun: the stream ends with an error event.
    fake_config(prefills[0], delay_ms=500)
    fake_config(decodes[0], delay_ms=0, token_interval_ms=100)
    status, events = sse_events("POST", router.url + "/generate", gen_body("s", 20, stream=True))
    check_eq(status, 200)
    check("error" in events[-1], events[-3:])
    check_eq(events[-1]["error"]["code"], 500)
    check(len(events) >= 2, "decode's first tokens came through before prefill failed")


@test
def retries_pick_a_new_pair_and_a_new_room(ctx):
    prefills, decodes, router = pd(ctx, 1, 2)
    fake_config(decodes[0], fail_status=503, fail_count=1)
    status, body = http_json("POST", router.url + "/generate", gen_body("retry me"))
    check_eq(status, 200, body)
    first, second = fake_requests(decodes[0])[0], fake_requests(decodes[1])[0]
    check_eq(first["outcome"], "failed")
    check(first["body"]["bootstrap_room"] != second["body"]["bootstrap_room"], "a new room on retry")
    prefill_rooms = [r["body"]["bootstrap_room"] for r in fake_requests(prefills[0])]
    check_eq(prefill_rooms, [first["body"]["bootstrap_room"], second["body"]["bootstrap_room"]])
    metrics = http_request("GET", router.url + "/metrics")[2].decode()
    check_eq(metric_value(metrics, "sgl_router_retries_total", route="/generate"), 1.0)
    # A 4xx other than 408/429 is the client's problem: no retry.
    fake_config(decodes[1], fail_status=400, fail_count=1)
    fake_config(decodes[0], fail_status=400, fail_count=1)
    status, body = http_json("POST", router.url + "/generate", gen_body("bad"))
    check_eq(status, 400, body)
    metrics = http_request("GET", router.url + "/metrics")[2].decode()
    check_eq(metric_value(metrics, "sgl_router_retries_total", route="/generate"), 1.0)


@test
def retries_give_up_after_retry_max_retries(ctx):
    prefills, decodes, router = pd(ctx, 1, 1, flags=("--retry-max-retries", "3"))
    fake_config(decodes[0], fail_status=503, fail_count=-1)
    status, body = http_json("POST", router.url + "/generate", gen_body())
    check_eq(status, 503, body)
    check_eq(len(fake_requests(decodes[0])), 3, "three attempts")
    metrics = http_request("GET", router.url + "/metrics")[2].decode()
    check_eq(metric_value(metrics, "sgl_router_retries_exhausted_total", route="/generate"), 1.0)


@test
def a_client_that_leaves_cancels_both_upstream_requests(ctx):
    prefills, decodes, router = pd(ctx)
    fake_config(prefills[0], delay_ms=5000)
    fake_config(decodes[0], token_interval_ms=100)
    s = socket.create_connection(("127.0.0.1", router.port))
    body = json.dumps(gen_body("leave", 100, stream=True)).encode()
    s.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
              + str(len(body)).encode() + b"\r\n\r\n" + body)
    got = s.recv(65536)
    check(b"200 OK" in got, got)
    s.close()
    t0 = time.monotonic()
    wait_until(lambda: fake_requests(decodes[0])[-1]["outcome"] == "aborted", 5, what="decode's request aborted")
    wait_until(lambda: fake_requests(prefills[0])[-1]["outcome"] == "aborted", 5, what="prefill's request aborted")
    check(time.monotonic() - t0 < 3, "cancelled promptly")
    # The router is fine and the pair's load is back to zero.
    status, body = http_json("GET", router.url + "/workers")
    check_eq([w["load"] for w in body["workers"]], [0, 0], body)


@test
def a_decode_worker_that_dies_mid_stream_ends_the_stream_with_an_error(ctx):
    prefills, decodes, router = pd(ctx, 1, 2)
    for d in decodes:
        fake_config(d, token_interval_ms=50, die_after_tokens=3)
    status, events = sse_events("POST", router.url + "/generate", gen_body("die", 10, stream=True))
    check_eq(status, 200)
    check_eq(len([e for e in events if isinstance(e, dict) and "text" in e]), 3, events)
    check("error" in events[-1], events[-2:])
    check(events[-1]["error"]["code"] >= 500, events[-1])


@test
def cache_aware_balances_when_the_load_is_uneven(ctx):
    # --balance-abs-threshold 2: once one prefill holds 3 more requests than the other (and
    # 1.5x as many), cache_aware sends the next one to the least loaded worker.
    prefills, decodes, router = pd(ctx, 2, 1, flags=("--prefill-policy", "cache_aware", "--balance-abs-threshold", "2"))
    for p in prefills:
        fake_config(p, delay_ms=1500)
    prefix = "The same long prefix for every request in this test, " * 3
    results = parallel(lambda i: http_json("POST", router.url + "/generate", gen_body(prefix + str(i), 2)),
                       range(8), workers=8)
    check(all(s == 200 for s, _ in results), results)
    per_prefill = [len(fake_requests(p)) for p in prefills]
    check(min(per_prefill) >= 1, "the other prefill got some once the load was uneven", per_prefill)
    metrics = http_request("GET", router.url + "/metrics")[2].decode()
    check(metric_value(metrics, "sgl_router_load_balancing_events_total") >= 1.0, metrics)


if __name__ == "__main__":
    run_tests()

"""Helpers of the PD integration tests (test_pd.py, test_pd_faults.py): start a prefill and
a decode worker, send a request to both as the router would."""

import random
import threading

from pdctl_testlib import *  # noqa: F401,F403

SHM = "posix,cma,self"
TCP = "tcp,self"


def start_pd(ctx, model_args, tls, prefill_args=(), decode_args=(), common=()):
    """Starts a prefill and a decode worker with UCX_TLS=tls; returns (prefill, decode, bootstrap_port)."""
    bport = free_port()
    env = {"UCX_TLS": tls}
    p = ctx.start("prefill", *model_args, *common, "--disaggregation-bootstrap-port", str(bport), *prefill_args,
                  env=env, name=f"prefill-{len(ctx.procs)}", timeout=120)
    d = ctx.start("decode", *model_args, *common, *decode_args, env=env, name=f"decode-{len(ctx.procs)}",
                  timeout=120)
    return p, d, bport


def pd_call(p, d, bport, body, path="/generate", room=None, timeout=120):
    """Sends `body` with bootstrap fields to prefill and decode at once; returns
    ((prefill status, body), (decode status, body))."""
    room = room if room is not None else random.getrandbits(63)
    b = dict(body, bootstrap_host="127.0.0.1", bootstrap_port=bport, bootstrap_room=room)
    out = {}

    def go(name, url):
        try:
            out[name] = http_json("POST", url + path, b, timeout=timeout)
        except Exception as e:  # noqa: BLE001 - reported below
            out[name] = (None, repr(e))

    ts = [threading.Thread(target=go, args=("p", p.url)), threading.Thread(target=go, args=("d", d.url))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out["p"], out["d"]


def pd_generate(p, d, bport, body, **kw):
    (ps, pj), (ds, dj) = pd_call(p, d, bport, body, **kw)
    check_eq(ds, 200, "decode:", dj, "prefill:", ps, pj)
    check_eq(ps, 200, "prefill:", pj)
    check_eq(len(pj["output_ids"]), 1, "prefill answers with the first token:", pj)
    check_eq(pj["output_ids"][0], dj["output_ids"][0], "prefill's first token is decode's")
    return dj


def load_zero(w):
    status, j = http_json("GET", w.url + "/get_load")
    check_eq(status, 200, j)
    return j[0]["num_tokens"] == 0 and j[0]["num_reqs"] == 0

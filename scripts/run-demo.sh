#!/usr/bin/env bash
# `make run`: the example deployment end to end. Starts `pdctl up -c CONFIG` (router +
# prefill + decode on loopback, the tiny dummy model), waits for its "ready" line, runs a
# short `pdctl bench` through the router (the [bench] table of CONFIG), prints the bench's
# table, stops the deployment with SIGTERM and exits 0 when every request succeeded and
# `up` stopped cleanly.
#
#   scripts/run-demo.sh [PDCTL_BINARY]                     # CONFIG = config.example.toml
#   PDCTL_DEMO_CONFIG=scripts/demo-serve.toml make run     # a router + 2 `serve` workers
set -euo pipefail
pdctl=$(realpath "${1:-build/pdctl}")
cd "$(dirname "$0")/.."
config=${PDCTL_DEMO_CONFIG:-config.example.toml}
ready_timeout=${PDCTL_DEMO_READY_SECS:-60}

work=$(mktemp -d -t pdctl-demo-XXXXXX)
up_log=$work/up.log
up_pid=
finish() {
  # Whatever happened: `up` stops its children (and the kernel kills them if `up` dies).
  if [[ -n $up_pid ]] && kill -0 "$up_pid" 2>/dev/null; then
    kill -TERM "$up_pid" 2>/dev/null || true
    wait "$up_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap finish EXIT

"$pdctl" --version
echo "== pdctl up -c $config"
"$pdctl" up -c "$config" >"$up_log" 2>&1 &
up_pid=$!

# Wait for the "ready" line (or for `up` to give up: it exits non-zero on a failed start).
# A bash script has nothing to block on here, so it polls the log.
deadline=$((SECONDS + ready_timeout))
until grep -q "ready: send requests to" "$up_log"; do
  if ! kill -0 "$up_pid" 2>/dev/null; then
    cat "$up_log"
    wait "$up_pid" && rc=0 || rc=$?
    up_pid=
    echo "make run: pdctl up exited with status $rc before it was ready" >&2
    exit 1
  fi
  if ((SECONDS >= deadline)); then
    cat "$up_log"
    echo "make run: pdctl up was not ready within ${ready_timeout} s" >&2
    exit 1
  fi
  sleep 0.2
done
cat "$up_log"
shown=$(wc -l <"$up_log")
url=$(grep -o "ready: send requests to [^ ]*" "$up_log" | head -n1 | awk '{print $NF}')

echo
echo "== pdctl -c $config bench --base-url $url"
bench_out=$work/bench.out
"$pdctl" -c "$config" bench --base-url "$url" --disable-tqdm | tee "$bench_out"
num_prompts=$("$pdctl" -c "$config" bench --print-config | awk -F' = ' '$1 == "num-prompts" {print $2}')

echo
echo "== stopping the deployment (SIGTERM to pdctl up)"
kill -TERM "$up_pid"
wait "$up_pid" && up_rc=0 || up_rc=$?
up_pid=
tail -n +"$((shown + 1))" "$up_log"

ok=$(awk '/Successful requests:/ {print $NF}' "$bench_out")
if [[ "$ok" != "$num_prompts" ]]; then
  echo "make run: $ok of $num_prompts requests succeeded" >&2
  exit 1
fi
if [[ $up_rc -ne 0 ]]; then
  echo "make run: pdctl up exited with status $up_rc" >&2
  exit 1
fi
echo "make run: $ok/$num_prompts requests succeeded; the deployment stopped cleanly"

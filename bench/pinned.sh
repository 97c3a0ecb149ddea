#!/usr/bin/env bash
# The guard's cost with the server on a CPU of its own: bench/pinned.sh
#
# On a two-CPU machine bench/load.sh runs wrk, the emulator and the quickstart on the same
# CPUs, so a slower route also makes wrk sleep and be woken more, and the scheduler's work lands
# on the route being measured. This runs the quickstart on CPU 1 and wrk and the emulator on
# CPU 0 (taskset), and measures the unguarded route and the same route behind
# #[requires_feature], alternating, under load and with one connection: p50, p99, p99.9 and
# the throughput ratio. Under load the quickstart's CPU is the bottleneck, so the ratio is the
# guard's cost per request against the route's; with one connection the tail of the unguarded
# route is the machine's floor for any route.
#
# Environment: DURATION (seconds per run, default 5), ROUNDS (default 2), CONNECTIONS (default
# 64), QUICKSTART (another quickstart binary, for A/B runs).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
DURATION="${DURATION:-5}"
ROUNDS="${ROUNDS:-2}"
CONNECTIONS="${CONNECTIONS:-64}"

source bench/lib.sh
require wrk  # taskset is util-linux, on every Debian
if [ "$(nproc)" -lt 2 ]; then
  echo "bench/pinned.sh needs two CPUs (the quickstart on one, wrk and the emulator on the other)" >&2
  exit 1
fi
cargo build --release -q --workspace --all-features --bins --examples
quickstart="${QUICKSTART:-target/release/examples/quickstart}"

ATLAS_FIXTURE=examples/atlas-data.json PORT=0 RUST_LOG=warn taskset -c 0 target/release/atlas-emulator >"$tmp/emulator.log" 2>&1 &
pids+=($!)
emulator="http://127.0.0.1:$(listening "$tmp/emulator.log")"
key="$(python3 -c 'import json; print(json.load(open("examples/atlas-data.json"))["apiKey"])')"
ATLAS_API_KEY="$key" ATLAS_HOST="$emulator" PORT=0 RUST_LOG=warn taskset -c 1 "$quickstart" >"$tmp/quickstart.log" 2>&1 &
pids+=($!)
app="$(listening "$tmp/quickstart.log")"
token="$(curl -s "$app/demo/tokens" | python3 -c 'import json, sys; print(json.load(sys.stdin)["Alice"])')"

# One wrk run: "<requests/s> <p50 µs> <p99 µs> <p99.9 µs>".
measure() {
  local connections="$1" route="$2"
  taskset -c 0 wrk -t1 -c"$connections" -d"${DURATION}s" --latency -s bench/tail.lua \
    -H "Authorization: Bearer $token" "$app/api/$route" >"$tmp/wrk.txt"
  python3 - "$tmp/wrk.txt" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def micros(value):
    number, unit = re.match(r"([\d.]+)(us|ms|s)", value).groups()
    return float(number) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]
rate = re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)
p50 = micros(re.search(r"\s50%\s+(\S+)", text).group(1))
p99 = micros(re.search(r"\s99%\s+(\S+)", text).group(1))
p999 = re.search(r"p99.9=(\d+)", text).group(1)
print(f"{float(rate):.0f} {p50:.0f} {p99:.0f} {p999}")
PY
}

# Warm: the customer and the pricing model cached, the connections' buffers grown.
for route in public/data-explorer data-explorer; do
  taskset -c 0 wrk -t1 -c"$CONNECTIONS" -d2s -H "Authorization: Bearer $token" "$app/api/$route" >/dev/null
done

for connections in "$CONNECTIONS" 1; do
  echo
  echo "### quickstart on CPU 1, wrk and the emulator on CPU 0, $connections connection(s)"
  echo
  echo "| round | route | requests/s | p50 µs | p99 µs | p99.9 µs |"
  echo "|---:|---|---:|---:|---:|---:|"
  ratios=()
  for round in $(seq "$ROUNDS"); do
    read -r open_rate rest < <(measure "$connections" public/data-explorer)
    echo "| $round | unguarded | $open_rate | ${rest// / | } |"
    read -r guarded_rate rest < <(measure "$connections" data-explorer)
    echo "| $round | #[requires_feature] boolean | $guarded_rate | ${rest// / | } |"
    ratios+=("$(python3 -c "print(f'{$guarded_rate / $open_rate:.2f}')")")
  done
  echo
  echo "- guarded / unguarded throughput, each round: ${ratios[*]}"
done

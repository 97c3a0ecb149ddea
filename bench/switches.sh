#!/usr/bin/env bash
# Where a request's time goes, per request: bench/switches.sh
#
# Starts the emulator and three quickstarts (no spool, the spool on the disk of the temporary
# directory, the spool on tmpfs), drives each route with wrk, and counts with `perf stat`, on the
# quickstart serving it, the context switches, CPU time and syscalls per request; for the spool
# routes, `strace -c -f` of the quickstart's spool writes and syncs in a second run.
#
# Environment: DURATION (seconds per route, default 5), CONNECTIONS (a list, default "1 32 64
# 128"), TMPFS (default /dev/shm), QUICKSTART (another quickstart binary, for A/B runs).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
DURATION="${DURATION:-5}"
CONNECTIONS="${CONNECTIONS:-1 32 64 128}"
TMPFS="${TMPFS:-/dev/shm}"

source bench/lib.sh
require wrk perf strace
cargo build --release -q --workspace --all-features --bins --examples

ATLAS_FIXTURE=examples/atlas-data.json PORT=0 RUST_LOG=warn target/release/atlas-emulator >"$tmp/emulator.log" 2>&1 &
pids+=($!)
emulator="http://127.0.0.1:$(listening "$tmp/emulator.log")"
key="$(python3 -c 'import json; print(json.load(open("examples/atlas-data.json"))["apiKey"])')"

declare -A app pid token
start() {
  local name="$1"
  shift
  env ATLAS_API_KEY="$key" ATLAS_HOST="$emulator" PORT=0 RUST_LOG=warn "$@" "${QUICKSTART:-target/release/examples/quickstart}" >"$tmp/$name.log" 2>&1 &
  pid[$name]=$!
  pids+=($!)
  app[$name]="$(listening "$tmp/$name.log")"
  token[$name]="$(curl -s "${app[$name]}/demo/tokens" | python3 -c 'import json, sys; print(json.load(sys.stdin)["Alice"])')"
}
shm="$(mktemp -d "$TMPFS/atlas-spool-XXXXXX")"
trap 'rm -rf "$shm"; cleanup' EXIT
start plain
start disk ATLAS_EVENT_SPOOL="$tmp/spool"
start tmpfs ATLAS_EVENT_SPOOL="$shm"

BODY='{"prompt":"hello there"}'
routes=(
  "unguarded plain GET /api/public/data-explorer"
  "guarded plain GET /api/data-explorer"
  "limit plain GET /api/limited/data-explorer"
  "usage,no-spool plain POST /api/ai/complete"
  "usage,spool-on-disk disk POST /api/ai/complete"
  "usage,spool-on-tmpfs tmpfs POST /api/ai/complete"
)

# One route under wrk while perf counts on its quickstart; prints a table row.
measure() {
  local label="$1" server="$2" method="$3" path="$4" connections="$5"
  local script=()
  [ "$method" = POST ] && script=(-s bench/tail.lua)
  BODY="$([ "$method" = POST ] && echo "$BODY")" wrk -t"$((connections > 1 ? 2 : 1))" -c"$connections" -d"$((DURATION + 1))s" \
    "${script[@]}" -H "Authorization: Bearer ${token[$server]}" "${app[$server]}$path" >"$tmp/wrk.out" &
  local load=$!
  sleep 0.5
  perf stat -x, -e context-switches,task-clock,raw_syscalls:sys_enter -p "${pid[$server]}" -o "$tmp/perf.out" -- sleep "$DURATION" 2>/dev/null
  wait "$load"
  python3 - "$label" "$connections" "$DURATION" "$tmp/perf.out" "$tmp/wrk.out" <<'PY'
import re, sys
label, connections, duration, perf, wrk = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5]
counts = {}
for line in open(perf):
    fields = line.strip().split(",")
    if len(fields) > 2 and fields[0].replace(".", "").isdigit():
        counts[fields[2]] = float(fields[0])
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", open(wrk).read()).group(1))
requests = rps * duration
print(f"| {label} | {connections} | {rps:,.0f} | {counts['context-switches'] / requests:.2f} | "
      f"{counts['task-clock'] * 1e3 / requests:.1f} | {counts['raw_syscalls:sys_enter'] / requests:.2f} |")
PY
}

echo "| route | connections | requests/s | context switches / request | CPU µs / request (quickstart) | syscalls / request |"
echo "|---|---:|---:|---:|---:|---:|"
for connections in $CONNECTIONS; do
  for route in "${routes[@]}"; do
    # shellcheck disable=SC2086
    measure $route "$connections"
  done
done

# The spool's own syscalls: what the writer (or the request leading a group) does per request.
for server in disk tmpfs; do
  connections="${CONNECTIONS##* }"
  echo
  echo "### strace -c -f of the quickstart, spool on $server, $connections connections (write, fdatasync, futex, lseek)"
  BODY="$BODY" wrk -t2 -c"$connections" -d"$((DURATION + 1))s" -s bench/tail.lua -H "Authorization: Bearer ${token[$server]}" "${app[$server]}/api/ai/complete" >"$tmp/wrk.out" &
  load=$!
  sleep 0.5
  timeout "$DURATION" strace -c -f -p "${pid[$server]}" -o "$tmp/strace.out" 2>/dev/null || true
  wait "$load"
  echo '```'
  grep -E 'syscall|----|write$|fdatasync|futex|lseek|epoll_wait|eventfd|total' "$tmp/strace.out" | head -12
  echo '```'
done

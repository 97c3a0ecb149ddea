#!/usr/bin/env bash
# Where the time goes: bench/profile.sh
#
# Starts the emulator and the quickstart (release, durable spool on), drives the guarded route
# and then the usage route with wrk, and samples the quickstart with `perf record` during each.
# Prints the top frames (self time, all threads) of each profile.
#
# Environment: DURATION (seconds per profile, default 8), CONNECTIONS (default 32), TOP
# (frames shown, default 25).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
DURATION="${DURATION:-8}"
CONNECTIONS="${CONNECTIONS:-32}"
TOP="${TOP:-25}"

source bench/lib.sh
require wrk perf
cargo build --release -q --workspace --all-features --bins --examples

ATLAS_FIXTURE=examples/atlas-data.json PORT=0 RUST_LOG=warn target/release/atlas-emulator >"$tmp/emulator.log" 2>&1 &
pids+=($!)
emulator="http://127.0.0.1:$(listening "$tmp/emulator.log")"
key="$(python3 -c 'import json; print(json.load(open("examples/atlas-data.json"))["apiKey"])')"
ATLAS_API_KEY="$key" ATLAS_HOST="$emulator" ATLAS_EVENT_SPOOL="$tmp/spool" PORT=0 RUST_LOG=warn target/release/examples/quickstart >"$tmp/quickstart.log" 2>&1 &
app_pid=$!
pids+=($app_pid)
app="$(listening "$tmp/quickstart.log")"
token="$(curl -s "$app/demo/tokens" | python3 -c 'import json, sys; print(json.load(sys.stdin)["Alice"])')"

profile() {
  local file="$1" name="$2"
  shift 2
  wrk -t2 -c"$CONNECTIONS" -d"$((DURATION + 2))s" -H "Authorization: Bearer $token" "$@" >"$tmp/$file.wrk" &
  local load=$!
  sleep 1
  perf record -q -g -p "$app_pid" -o "$tmp/$file.data" -- sleep "$DURATION" 2>/dev/null
  wait "$load"
  echo
  echo "### $name: $(grep -o 'Requests/sec:.*' "$tmp/$file.wrk")"
  echo
  echo '```'
  perf report -i "$tmp/$file.data" --no-children --sort symbol -g none --stdio 2>/dev/null \
    | grep -E '^ +[0-9.]+%' | sed -n "1,${TOP}p" | sed -E 's/ +/ /g; s/( -)+ *$//' | cut -c1-140
  echo '```'
}

profile guarded "guarded route (GET /api/data-explorer)" "$app/api/data-explorer"
profile usage "usage route (POST /api/ai/complete, spool on)" -s bench/post.lua "$app/api/ai/complete"

#!/usr/bin/env bash
# How long the emulator takes to answer while a quickstart sends it usage under load:
# bench/emulator-stall.sh
#
# Starts the emulator (metering on, the quickstart's data file) and the quickstart, drives the
# usage route with wrk (64 connections) for DURATION seconds (default 40), and meanwhile asks
# the emulator for a customer every 50 ms. Prints the answers slower than 50 ms (the probe's
# number and seconds), wrk's latency line and the emulator's memory. A stall here is what the
# first check after each of the emulator's pushes waits for.
#
# Environment: DURATION, QUICKSTART (another quickstart binary).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
DURATION="${DURATION:-40}"

source bench/lib.sh
require wrk
cargo build --release -q --workspace --all-features --bins --examples

ATLAS_FIXTURE=examples/atlas-data.json PORT=0 RUST_LOG=warn target/release/atlas-emulator >"$tmp/emulator.log" 2>&1 &
emulator_pid=$!
pids+=($emulator_pid)
emulator="http://127.0.0.1:$(listening "$tmp/emulator.log")"
key="$(python3 -c 'import json; print(json.load(open("examples/atlas-data.json"))["apiKey"])')"
ATLAS_API_KEY="$key" ATLAS_HOST="$emulator" PORT=0 RUST_LOG=warn "${QUICKSTART:-target/release/examples/quickstart}" >"$tmp/quickstart.log" 2>&1 &
pids+=($!)
app="$(listening "$tmp/quickstart.log")"
token="$(curl -s "$app/demo/tokens" | python3 -c 'import json, sys; print(json.load(sys.stdin)["Alice"])')"

wrk -t2 -c64 -d"${DURATION}s" -s bench/post.lua -H "Authorization: Bearer $token" "$app/api/ai/complete" >"$tmp/wrk.txt" &
load=$!
echo "emulator answers slower than 50 ms (probe, seconds):"
for probe in $(seq $((DURATION * 15))); do
  curl -s -o /dev/null -w "$probe %{time_total}\n" -H "Authorization: Bearer $key" "$emulator/external/customers/user_alice"
  sleep 0.05
done | awk '$2 > 0.05'
wait "$load"
grep -E "Latency |Requests/sec" "$tmp/wrk.txt"
echo "emulator resident memory: $(ps -o rss= -p "$emulator_pid") KiB"

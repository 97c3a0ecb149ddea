#!/usr/bin/env bash
# The load benchmark, in one command: bench/load.sh
#
# Starts the emulator, the quickstart (release) against it, and the official
# @runonatlas/core behind node:http (bench/node-baseline.mjs) against the same emulator and
# customer; warms every cache; then measures with wrk, alternating the targets round after
# round: the unguarded route, the same route behind #[requires_feature] on a boolean feature,
# the same behind a limit feature, and the official SDK's check. Under load (CONNECTIONS,
# default 64) and with one connection. Then the usage route (POST /api/ai/complete, a guard
# that reports usage) on a second quickstart with the durable spool (ATLAS_EVENT_SPOOL) beside
# the first without it. Loopback only. Prints a Markdown report.
#
# Environment: DURATION (seconds per run, default 10), ROUNDS (default 2), CONNECTIONS,
# QUICKSTART (another quickstart binary to measure, for A/B runs), ONLY=usage or ONLY=checks (just
# that section), SPOOL_DIR (the spool's directory: its disk).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export ATLAS_SHARED="${ATLAS_SHARED:-$root/../shared}"

source bench/lib.sh
require wrk
cargo build --release -q --workspace --all-features --bins --examples

ATLAS_FIXTURE=examples/atlas-data.json PORT=0 RUST_LOG=warn target/release/atlas-emulator >"$tmp/emulator.log" 2>&1 &
pids+=($!)
emulator="http://127.0.0.1:$(listening "$tmp/emulator.log")"
key="$(python3 -c 'import json; print(json.load(open("examples/atlas-data.json"))["apiKey"])')"

ATLAS_API_KEY="$key" ATLAS_HOST="$emulator" PORT=0 RUST_LOG=warn "${QUICKSTART:-target/release/examples/quickstart}" >"$tmp/quickstart.log" 2>&1 &
pids+=($!)
app="$(listening "$tmp/quickstart.log")"

ATLAS_API_KEY="$key" ATLAS_HOST="$emulator" ATLAS_EVENT_SPOOL="${SPOOL_DIR:-$tmp/spool}" PORT=0 RUST_LOG=warn target/release/examples/quickstart >"$tmp/quickstart-spool.log" 2>&1 &
pids+=($!)
spooled="$(listening "$tmp/quickstart-spool.log")"

ATLAS_API_KEY="$key" ATLAS_HOST="$emulator" PORT=0 node bench/node-baseline.mjs >"$tmp/node.log" 2>&1 &
pids+=($!)
node="$(listening "$tmp/node.log")"

alice() { curl -s "$1/demo/tokens" | python3 -c 'import json, sys; print(json.load(sys.stdin)["Alice"])'; }
token="$(alice "$app")"
# Each quickstart signs its demo tokens with its own key.
token_spool="$(alice "$spooled")"

APP="$app" APP_SPOOL="$spooled" TOKEN_SPOOL="$token_spool" NODE="$node" TOKEN="$token" python3 bench/measure.py

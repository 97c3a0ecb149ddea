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
# the first without it. Then the quota routes: the usage route for a customer without a maximum
# and one with (pending usage counted by every check), the reservation route
# (POST /api/ai/summarise) and the credit route (POST /api/images). The emulator meters (the
# quickstart's data file), so the platform's figures move during the run. Loopback only.
# The one-connection checks run twice: as scheduled, and with wrk and every server on CPU 0
# (a VM's cross-CPU wake-up otherwise dominates one connection's latency). Prints a Markdown
# report.
#
# Environment: DURATION (seconds per run, default 10), ROUNDS (default 2), CONNECTIONS,
# QUICKSTART (another quickstart binary to measure, for A/B runs), ONLY=checks, ONLY=usage or
# ONLY=quotas or ONLY=audit (the guarded route with the decision log on beside the same route
# without a hook) (just that section; without ONLY, each section runs in turn on servers started
# for it), SPOOL_DIR (the spool's directory: its disk).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export ATLAS_SHARED="${ATLAS_SHARED:-$root/../shared}"

source bench/lib.sh
require wrk
cargo build --release -q --workspace --all-features --bins --examples

# Each section on servers of its own: the emulator keeps every usage event in memory (tests
# read them back), and a section's millions of events left it slower for the next one, whose
# quickstart then refused usage it could not queue (503) and measured the emulator's backlog.
if [ -z "${ONLY:-}" ]; then
  for section in checks usage quotas audit; do
    ONLY="$section" "$0"
  done
  exit 0
fi

# The quickstart's data, metering on, with room for a benchmark's worth of quota: Erin's Pro
# maximum of AI tokens far away and a large image credit balance.
python3 - "$tmp/atlas-data.json" <<'PY'
import json, sys
data = json.load(open("examples/atlas-data.json"))
for plan in data["pricingModel"]["plans"]:
    if plan["id"] == "plan_pro":
        text = json.dumps(plan).replace('"maxUsage": 1000000', '"maxUsage": 1000000000000')
        plan.clear(); plan.update(json.loads(text))
for customer in data["customers"]:
    if customer["externalId"] == "user_erin":
        customer["conditionalBillableAccess"][0]["currentUsage"] = 0
        customer["customPricingUnits"][0]["balance"] = 1e12
json.dump(data, open(sys.argv[1], "w"))
PY
ATLAS_FIXTURE="$tmp/atlas-data.json" PORT=0 RUST_LOG=warn target/release/atlas-emulator >"$tmp/emulator.log" 2>&1 &
pids+=($!)
emulator="http://127.0.0.1:$(listening "$tmp/emulator.log")"
key="$(python3 -c 'import json; print(json.load(open("examples/atlas-data.json"))["apiKey"])')"

ATLAS_API_KEY="$key" ATLAS_HOST="$emulator" PORT=0 RUST_LOG=warn "${QUICKSTART:-target/release/examples/quickstart}" >"$tmp/quickstart.log" 2>&1 &
pids+=($!)
app="$(listening "$tmp/quickstart.log")"

ATLAS_API_KEY="$key" ATLAS_HOST="$emulator" ATLAS_EVENT_SPOOL="${SPOOL_DIR:-$tmp/spool}" PORT=0 RUST_LOG=warn target/release/examples/quickstart >"$tmp/quickstart-spool.log" 2>&1 &
pids+=($!)
spooled="$(listening "$tmp/quickstart-spool.log")"

# The decision log on (1 % of allowed checks, the default), for the audit section.
ATLAS_API_KEY="$key" ATLAS_HOST="$emulator" ATLAS_DECISION_LOG="$tmp/decisions.jsonl" PORT=0 RUST_LOG=warn target/release/examples/quickstart >"$tmp/quickstart-log.log" 2>&1 &
pids+=($!)
logged="$(listening "$tmp/quickstart-log.log")"

ATLAS_API_KEY="$key" ATLAS_HOST="$emulator" PORT=0 node bench/node-baseline.mjs >"$tmp/node.log" 2>&1 &
pids+=($!)
node="$(listening "$tmp/node.log")"

demo_token() { curl -s "$1/demo/tokens" | python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"; }
alice() { demo_token "$1" Alice; }
token="$(alice "$app")"
token_quota="$(demo_token "$app" "Erin Pro")"
# Each quickstart signs its demo tokens with its own key.
token_spool="$(alice "$spooled")"
token_log="$(alice "$logged")"

SERVER_PIDS="${pids[*]}" APP_LOG="$logged" TOKEN_LOG="$token_log" TOKEN_QUOTA="$token_quota" APP="$app" APP_SPOOL="$spooled" TOKEN_SPOOL="$token_spool" NODE="$node" TOKEN="$token" python3 bench/measure.py

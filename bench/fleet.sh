#!/usr/bin/env bash
# The fleet benchmark: bench/fleet.sh
#
# One standalone emulator (the platform), one redis-server, and 4 quickstart processes (release)
# started together, as after a deploy. Measures: platform customer requests per customer when
# every instance checks every customer at once, with the Redis tier and without; guarded
# throughput of an instance with the tier against one without (the hot path must not notice
# it); usage events per second through the shared queue (4 instances under wrk, until the
# platform has every event); and the fleet's limits: a quota route (`usage = 1` on a maximum)
# and an exclusive route with the tier on and off, throughput and p50/p99 (the Redis round
# trips of the fleet's ledger and lock). Loopback only. Prints a Markdown report.
#
# Environment: DURATION (seconds per wrk run, default 8), ROUNDS (default 2), ONLY=limits
# (the last section alone).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

source bench/lib.sh
require wrk redis-server
cargo build --release -q --workspace --all-features --bins --examples

# The quickstart's data with room for a benchmark's worth of quota: Erin's Pro maximum of AI
# tokens far away.
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
json.dump(data, open(sys.argv[1], "w"))
PY
ATLAS_FIXTURE="$tmp/atlas-data.json" PORT=0 RUST_LOG=warn target/release/atlas-emulator >"$tmp/emulator.log" 2>&1 &
pids+=($!)
emulator="http://127.0.0.1:$(listening "$tmp/emulator.log")"
key="$(python3 -c 'import json; print(json.load(open("examples/atlas-data.json"))["apiKey"])')"

redis_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" >/dev/null 2>&1 &
pids+=($!)
until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.05; done

EMULATOR="$emulator" KEY="$key" REDIS_URL="redis://127.0.0.1:$redis_port/0" REDIS_PORT="$redis_port" \
  TMP="$tmp" python3 bench/fleet.py

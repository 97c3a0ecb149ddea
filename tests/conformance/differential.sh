#!/usr/bin/env bash
# Differential conformance: fixtures generated from a fixed seed and from one that changes per
# run (printed, so a failure can be replayed with DIFF_SEED), played against the official
# client first (it must agree with itself), then against our client and our emulator.
#
#   bash tests/conformance/differential.sh [contract-service] [emulator]
#
# Environment: DIFF_COUNT (fixtures per seed, default 20), DIFF_SEED (the changing seed;
# default from the clock).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
shared="$(cd .. && pwd)/shared"
subject="${1:-target/release/examples/contract_service}"
emulator="${2:-target/release/atlas-emulator}"
count="${DIFF_COUNT:-20}"
changing="${DIFF_SEED:-$(( $(date +%s) % 100000 + 2 ))}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
node tests/conformance/generate.mjs --seed 1 --count "$count" --out "$work/fixtures"
node tests/conformance/generate.mjs --seed "$changing" --count "$count" --out "$work/fixtures"
echo "seeds: 1 (fixed) and $changing (this run's; replay with DIFF_SEED=$changing)"
echo "== the official client against itself"
(cd "$shared/conformance" && ./run.sh --subject "node official-service.mjs" --fixtures "$work/fixtures")
echo "== our client against the official client"
"$shared/conformance/run.sh" --subject "$subject" --fixtures "$work/fixtures"
echo "== the official client on our emulator against the reference platform"
"$shared/conformance/run.sh" --platform "$emulator" --fixtures "$work/fixtures"

#!/usr/bin/env bash
# Differential conformance: fixtures generated from a fixed seed and from one that changes per
# run (printed, so a failure can be replayed with DIFF_SEED), played against the official
# client first (it must agree with itself), then against our client and our emulator. A fixture
# that fails is shrunk (shrink.mjs) into target/conformance-shrunk/, small enough to read and
# to keep in tests/conformance/fixtures once fixed.
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

# Runs one harness mode; on a failure, shrinks the first failing fixture and fails.
play() {
  local mode="$1" binary="$2"
  local log="$work/run$mode.log"
  if "$shared/conformance/run.sh" "$mode" "$binary" --fixtures "$work/fixtures" | tee "$log"; then
    return 0
  fi
  local failed
  failed="$(sed -n 's/^FAIL //p' "$log" | head -1)"
  mkdir -p target/conformance-shrunk
  echo "== shrinking $failed ($mode)"
  if node tests/conformance/shrink.mjs --fixture "$work/fixtures/$failed.json" \
      --out "target/conformance-shrunk/$failed.json" \
      -- bash tests/conformance/still-differs.sh "$mode" "$binary"; then
    echo "the failing case, shrunk: target/conformance-shrunk/$failed.json (replay: $shared/conformance/run.sh $mode $binary --fixtures target/conformance-shrunk/$failed.json)"
  fi
  return 1
}
echo "== our client against the official client"
play --subject "$subject"
echo "== the official client on our emulator against the reference platform"
play --platform "$emulator"

#!/usr/bin/env bash
# The interestingness test shrink.mjs runs for the conformance harness: exits 0 when the
# fixture still shows a difference between the two sides (not a broken fixture, not a reference
# that misses the fixture's own expectations, not a process that failed to start).
#
#   node tests/conformance/shrink.mjs --fixture F --out G -- \
#     bash tests/conformance/still-differs.sh --subject target/release/examples/contract_service
#   (or --platform target/release/atlas-emulator)
set -uo pipefail
mode="$1" binary="$2" fixture="$3"
shared="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)/shared"
output="$("$shared/conformance/run.sh" "$mode" "$binary" --fixtures "$fixture" 2>&1)"
[ $? -eq 1 ] || exit 1
# A difference is reported as "step N <op> ...: <where>: <this> vs <that>"; what the fixture
# itself gets wrong names the reference or the fixture.
grep -E '^ +step [0-9]+ ' <<<"$output" | grep -vqE 'the reference|invalid fixture|did not start'

#!/usr/bin/env bash
# The frontend check, in one command: installs the pinned npm packages (once), then drives
# the official React SDK client against the quickstart. Needs Node.js 18+ and npm.
#   tests/frontend/run.sh [path of the quickstart binary]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
quickstart="$(realpath "${1:-$here/../../target/release/examples/quickstart}")"
cd "$here"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2
fi
exec node check.mjs "$quickstart"

#!/usr/bin/env bash
# The browser test, in one command: installs Chromium (Debian's package) when missing and the
# pinned npm packages (once), then drives the quickstart's demo page as a person would.
#   tests/frontend/browser.sh [path of the quickstart binary]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
quickstart="$(realpath "${1:-$here/../../target/release/examples/quickstart}")"
if ! command -v chromium >/dev/null 2>&1; then
  sudo_if_needed=()
  [ "$(id -u)" -ne 0 ] && sudo_if_needed=(sudo)
  "${sudo_if_needed[@]}" apt-get update -qq
  "${sudo_if_needed[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
cd "$here"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2
fi
exec node browser.mjs "$quickstart"

# Shared by the benchmark scripts (sourced): the temporary directory and the processes they
# start, stopped on exit, and waiting for a server's "listening <address>" line.
tmp="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# The scripts run several quickstarts at once: each serves /metrics on a port of its own.
export METRICS_BIND="${METRICS_BIND:-127.0.0.1:0}"

# Waits for a "listening <address>" line in the log file $1 and prints the address.
listening() {
  for _ in $(seq 300); do
    if line="$(grep -m1 -o 'listening [^ ]*' "$1")"; then
      echo "${line#listening }"
      return
    fi
    sleep 0.1
  done
  echo "no 'listening' line in $1:" >&2
  cat "$1" >&2
  exit 1
}

# Installs Debian packages that are missing: `require wrk redis-server` (command, package).
require() {
  local missing=()
  for tool in "$@"; do
    local package="$tool"
    [ "$tool" = perf ] && package=linux-perf
    command -v "$tool" >/dev/null 2>&1 || missing+=("$package")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]} (Debian packages)" >&2
    apt-get update -qq >&2 && apt-get install -y -qq "${missing[@]}" >&2
  fi
}

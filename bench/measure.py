"""Runs wrk against the load benchmark's targets and prints the report (see bench/load.sh)."""

import os
import re
import statistics
import subprocess
import urllib.request

APP, NODE, TOKEN = os.environ["APP"], os.environ["NODE"], os.environ["TOKEN"]
APP_SPOOL, TOKEN_SPOOL = os.environ["APP_SPOOL"], os.environ["TOKEN_SPOOL"]
APP_LOG, TOKEN_LOG = os.environ["APP_LOG"], os.environ["TOKEN_LOG"]  # the decision log on
TOKEN_QUOTA = os.environ["TOKEN_QUOTA"]  # Erin's: Pro, a maximum of AI tokens and image credits
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tail.lua")
DURATION = int(os.environ.get("DURATION", "10"))
ROUNDS = int(os.environ.get("ROUNDS", "2"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "64"))
# The servers' processes (load.sh), pinned with wrk to one CPU for the one-CPU runs.
SERVER_PIDS = os.environ.get("SERVER_PIDS", "").split()
ONLY = os.environ.get("ONLY", "")  # "checks", "usage", "quotas" or "audit": just that section
CUSTOMER = "org_standard_corp"  # Alice's organisation: her token resolves to it

TARGETS = [
    ("unguarded", f"{APP}/api/public/data-explorer", f"Authorization: Bearer {TOKEN}"),
    ("#[requires_feature] boolean", f"{APP}/api/data-explorer", f"Authorization: Bearer {TOKEN}"),
    ("#[requires_feature] limit", f"{APP}/api/limited/data-explorer", f"Authorization: Bearer {TOKEN}"),
    ("official SDK (node:http)", f"{NODE}/api/data-explorer", f"x-customer-id: {CUSTOMER}"),
]


USAGE_TARGETS = [
    ("usage route, no spool", f"{APP}/api/ai/complete", f"Authorization: Bearer {TOKEN}"),
    ("usage route, durable spool", f"{APP_SPOOL}/api/ai/complete", f"Authorization: Bearer {TOKEN_SPOOL}"),
]

PROMPT = '{"prompt":"hello there"}'
SUMMARY = '{"text":"four words of text","maxTokens":10}'
IMAGE = '{"prompt":"a lighthouse"}'

# The quota routes, each with the body it takes: the same usage route for a customer without a
# maximum (Alice's Team) and one with (Erin's Pro: every check counts the pending usage), the
# reservation route and the credit route.
QUOTA_TARGETS = [
    ("usage route, no maximum", f"{APP}/api/ai/complete", f"Authorization: Bearer {TOKEN}", PROMPT),
    ("usage route, maximum (pending usage counted)", f"{APP}/api/ai/complete", f"Authorization: Bearer {TOKEN_QUOTA}", PROMPT),
    ("reservation route (reserve 10, commit 4)", f"{APP}/api/ai/summarise", f"Authorization: Bearer {TOKEN_QUOTA}", SUMMARY),
    ("credit route (1 credit, blockOverage)", f"{APP}/api/images", f"Authorization: Bearer {TOKEN_QUOTA}", IMAGE),
]

# The same guarded route on the quickstart without a hook and on one with the decision log
# (1 % of allowed checks sampled), beside the unguarded route.
AUDIT_TARGETS = [
    ("unguarded", f"{APP}/api/public/data-explorer", f"Authorization: Bearer {TOKEN}"),
    ("#[requires_feature] boolean, no hook", f"{APP}/api/data-explorer", f"Authorization: Bearer {TOKEN}"),
    ("#[requires_feature] boolean, decision log (1 %)", f"{APP_LOG}/api/data-explorer", f"Authorization: Bearer {TOKEN_LOG}"),
]


def warm(url, header, body=None):
    name, value = header.split(": ", 1)
    for _ in range(50):
        request = urllib.request.Request(url, headers={name: value})
        if body is not None:
            request = urllib.request.Request(
                url, data=body.encode(), headers={name: value, "Content-Type": "application/json"})
        with urllib.request.urlopen(request) as response:
            assert 200 <= response.status < 300, (url, response.status)


def seconds(text):
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[unit]


def wrk(url, header, connections, body=None, pinned=False):
    threads = 1 if connections == 1 else 2
    output = subprocess.run(
        (["taskset", "-c", "0"] if pinned else []) + ["wrk", f"-t{threads}", f"-c{connections}", f"-d{DURATION}s", "--latency", "-s", SCRIPT, "-H", header, url],
        check=True, capture_output=True, text=True, env={**os.environ, "BODY": body or ""},
    ).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        raise SystemExit(f"errors under load at {url}:\n{output}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p50 = seconds(re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE).group(1))
    p99 = seconds(re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE).group(1))
    p999, worst = (int(v) * 1e-6 for v in re.search(r"tail p99.9=(\d+) max=(\d+)", output).groups())
    return rps, p50, p99, p999, worst


def micros(value):
    return f"{value * 1e6:.0f} µs"


def sections(*names):
    return not ONLY or ONLY in names


for _, url, header in TARGETS if sections("checks") else ():
    warm(url, header)
for _, url, header in USAGE_TARGETS if sections("usage") else ():
    warm(url, header, PROMPT)
for _, url, header, body in QUOTA_TARGETS if sections("quotas") else ():
    warm(url, header, body)
for _, url, header in AUDIT_TARGETS if sections("audit") else ():
    warm(url, header)


def pin(cpus):
    """Moves every thread of the servers to these CPUs ("0", or "0-N" to undo)."""
    for pid in SERVER_PIDS:
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, pid], check=True, capture_output=True)


def measure(targets, connections, title, pinned=False):
    """Runs wrk on each target (name, url, header and, for a POST, its body), alternating,
    ROUNDS times; prints the table and returns, in the targets' order, the means of requests/s,
    p50, p99 and p99.9, and the worst round's maximum."""
    results = {target[0]: [] for target in targets}
    for _ in range(ROUNDS):
        for name, url, header, *body in targets:
            results[name].append(wrk(url, header, connections, *body, pinned=pinned))
    mean = {
        name: tuple(statistics.mean(run[i] for run in runs) for i in range(4)) + (max(run[4] for run in runs),)
        for name, runs in results.items()
    }
    label = "one connection" if connections == 1 else f"{connections} connections, 2 wrk threads"
    if pinned:
        label += ", wrk and the servers on one CPU"
    print(f"\n### {title}{label} ({ROUNDS} alternating rounds of {DURATION} s, means)\n")
    print("| target | requests/s | p50 | p99 | p99.9 | max (worst round) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (rps, p50, p99, p999, worst) in mean.items():
        print(f"| {name} | {rps:,.0f} | {micros(p50)} | {micros(p99)} | {micros(p999)} | {micros(worst)} |")
    print()
    return [mean[target[0]] for target in targets]


# One connection twice: as the machine schedules it, then with wrk and the servers on one CPU.
# On this VM a request that crosses vCPUs waits for the other vCPU to wake (an IPI to a halted
# vCPU): tens of µs at the median and milliseconds in the tail, the same for every server.
# On one CPU the software's own latency shows.
CHECK_RUNS = [(CONNECTIONS, False), (1, False), (1, True)]
for connections, pinned in CHECK_RUNS if sections("checks") else ():
    if pinned:
        pin("0")
    unguarded, boolean, limit, node = measure(TARGETS, connections, "", pinned)
    if pinned:
        pin(f"0-{os.cpu_count() - 1}")
    print(f"- guarded (boolean) / unguarded throughput: {boolean[0] / unguarded[0]:.2f}")
    print(f"- guarded (limit) / unguarded throughput: {limit[0] / unguarded[0]:.2f}")
    print(f"- guarded (boolean) / official SDK throughput: {boolean[0] / node[0]:.2f}")
    print(f"- guarded (boolean) p99 / official SDK p99: {boolean[2] / node[2]:.2f}")
    print(f"- guarded (boolean) p99.9: {micros(boolean[3])}; official SDK: {micros(node[3])}")

USAGE_POSTS = [(name, url, header, PROMPT) for name, url, header in USAGE_TARGETS]
for connections in (CONNECTIONS, 1) if sections("usage") else ():
    plain, spooled = measure(USAGE_POSTS, connections, "usage route, ")
    print(f"- usage route with the spool / without: {spooled[0] / plain[0]:.2f}")
    print(f"- usage route with the spool: p99 {micros(spooled[2])}, max {micros(spooled[4])}")

for connections in (CONNECTIONS, 1) if sections("quotas") else ():
    unlimited, metered, reserved, credits = measure(QUOTA_TARGETS, connections, "quota routes, ")
    print(f"- usage route with a maximum / without: {metered[0] / unlimited[0]:.2f}")
    print(f"- reservation route / usage route without a maximum: {reserved[0] / unlimited[0]:.2f}")
    print(f"- credit route / usage route without a maximum: {credits[0] / unlimited[0]:.2f}")

for connections in (CONNECTIONS, 1) if sections("audit") else ():
    unguarded, plain, logged = measure(AUDIT_TARGETS, connections, "decision log, ")
    print(f"- guarded, no hook / unguarded throughput: {plain[0] / unguarded[0]:.2f}")
    print(f"- guarded, decision log on / no hook throughput: {logged[0] / plain[0]:.2f}")

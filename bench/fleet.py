"""Orchestrates the fleet benchmark (see bench/fleet.sh) and prints its report."""

import json
import os
import re
import statistics
import subprocess
import threading
import time
import urllib.request

EMULATOR, KEY, REDIS_URL = os.environ["EMULATOR"], os.environ["KEY"], os.environ["REDIS_URL"]
REDIS_PORT, TMP = os.environ["REDIS_PORT"], os.environ["TMP"]
DURATION = int(os.environ.get("DURATION", "8"))
ROUNDS = int(os.environ.get("ROUNDS", "2"))
ONLY = os.environ.get("ONLY", "")  # "limits": section 4 alone
HERE = os.path.dirname(os.path.abspath(__file__))
CUSTOMER_ROUTE = "GET /external/customers/external-id/:id/with-active-and-upcoming-subscriptions"
USERS = ["Alice", "Dave Free", "Erin Pro", "Frank Locked"]  # one per customer
started = []


def get(url, headers=None, data=None):
    request = urllib.request.Request(url, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def platform_requests(route):
    return json.loads(get(f"{EMULATOR}/__admin/requests")[1]).get(route, 0)


def start_fleet(count, redis, name):
    processes = []
    for i in range(count):
        log = open(f"{TMP}/{name}-{i}.log", "w")
        env = dict(os.environ, ATLAS_API_KEY=KEY, ATLAS_HOST=EMULATOR, PORT="0", RUST_LOG="warn")
        env.pop("ATLAS_REDIS_URL", None)
        if redis:
            env["ATLAS_REDIS_URL"] = REDIS_URL
        process = subprocess.Popen(["target/release/examples/quickstart"], stdout=log, stderr=subprocess.STDOUT, env=env)
        started.append(process)
        processes.append((process, f"{TMP}/{name}-{i}.log"))
    bases = []
    for process, log in processes:
        for _ in range(300):
            match = re.search(r"listening (\S+)", open(log).read())
            if match:
                bases.append(match.group(1))
                break
            time.sleep(0.1)
    tokens = [json.loads(get(f"{base}/demo/tokens")[1]) for base in bases]
    return [process for process, _ in processes], bases, tokens


def stop(processes):
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait()


def cold_checks(bases, tokens):
    """Every instance checks every customer at once; the platform customer requests it cost."""
    before = platform_requests(CUSTOMER_ROUTE)
    threads = []
    for user in USERS:
        for base, token in zip(bases, tokens):
            url = f"{base}/api/data-explorer"
            headers = {"Authorization": f"Bearer {token[user]}"}
            threads.append(threading.Thread(target=get, args=(url, headers)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return (platform_requests(CUSTOMER_ROUTE) - before) / len(USERS)


def wrk(url, token, connections=32, script=None, duration=DURATION):
    command = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "-H", f"Authorization: Bearer {token}"]
    if script:
        command += ["-s", os.path.join(HERE, "post.lua")]
    output = subprocess.run(command + [url], check=True, capture_output=True, text=True).stdout
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)), requests, int(errors.group(1)) if errors else 0


def seconds(text):
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[unit]


def wrk_latency(url, token, body, connections=32):
    """Requests/s, p50 and p99 (s) of a POST route under wrk."""
    command = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{DURATION}s", "--latency", "-s", os.path.join(HERE, "post.lua"),
               "-H", f"Authorization: Bearer {token}", url]
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=dict(os.environ, BODY=body)).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p50 = seconds(re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE).group(1))
    p99 = seconds(re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE).group(1))
    return rps, p50, p99


def redis(*args):
    return subprocess.run(["redis-cli", "-p", REDIS_PORT, *args], capture_output=True, text=True).stdout


try:
    if ONLY != "limits":
        # 1. Cold after a deploy: 4 instances, every customer checked on every instance at once.
        fleet, bases, tokens = start_fleet(4, True, "tier")
        time.sleep(1)
        with_tier = cold_checks(bases, tokens)
        stop(fleet)
        islands, island_bases, island_tokens = start_fleet(4, False, "islands")
        time.sleep(1)
        without_tier = cold_checks(island_bases, island_tokens)
        print("\n### Cold after a deploy (4 instances, 4 customers, each checked on every instance at once)\n")
        print("| | platform customer requests per customer |")
        print("|---|---:|")
        print(f"| with the Redis tier | {with_tier:.2f} |")
        print(f"| without | {without_tier:.2f} |")

        # 2. The hot path with the tier on and off: one instance of each, warm, alternating.
        fleet, bases, tokens = start_fleet(1, True, "hot-tier")
        for base, token in ((bases[0], tokens[0]), (island_bases[0], island_tokens[0])):
            for _ in range(20):
                get(f"{base}/api/data-explorer", {"Authorization": f"Bearer {token['Alice']}"})
        on, off = [], []
        for _ in range(ROUNDS):
            on.append(wrk(f"{bases[0]}/api/data-explorer", tokens[0]["Alice"])[0])
            off.append(wrk(f"{island_bases[0]}/api/data-explorer", island_tokens[0]["Alice"])[0])
        stop(fleet)
        stop(islands)
        print(f"\n### Guarded throughput, warm (wrk -t2 -c32, {ROUNDS} alternating rounds of {DURATION} s, means)\n")
        print("| instance | requests/s |")
        print("|---|---:|")
        print(f"| with the Redis tier | {statistics.mean(on):,.0f} |")
        print(f"| without | {statistics.mean(off):,.0f} |")
        print(f"\n- with / without: {statistics.mean(on) / statistics.mean(off):.2f}")

        # 3. Usage events through the shared queue: 4 instances under wrk, then until the
        # platform has them all.
        fleet, bases, tokens = start_fleet(4, True, "events")
        events_before = len(json.loads(get(f"{EMULATOR}/__admin/events")[1]))
        results = [None] * len(bases)
        began = time.time()

        def load(i):
            results[i] = wrk(f"{bases[i]}/api/ai/complete", tokens[i]["Erin Pro"], connections=8, script=True)

        threads = [threading.Thread(target=load, args=(i,)) for i in range(len(bases))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        load_ended = time.time()
        answered = sum(requests - errors for _, requests, errors in results)
        while True:
            events = json.loads(get(f"{EMULATOR}/__admin/events")[1])[events_before:]
            delivered = len(events)
            if delivered >= answered or time.time() - load_ended > 120:
                break
            time.sleep(0.5)
        delivered_at = time.time()
        stop(fleet)
        print(f"\n### Usage events through the shared queue (4 instances, wrk -t2 -c8 each, {DURATION} s)\n")
        print(f"- usage requests answered 200: {answered:,} ({answered / (load_ended - began):,.0f}/s across the fleet)")
        print(f"- events the platform received: {delivered:,}, all of them {delivered_at - load_ended:.1f} s after the load ended")
        keys = {event["idempotencyKey"] for event in events}
        print(f"- distinct idempotency keys among them: {len(keys):,} (each event sent once; wrk does not count the requests still in flight when it stops)")
        print(f"- end to end: {delivered / (delivered_at - began):,.0f} events/s into the platform")
        print(f"- left in the stream: {redis('--scan', '--pattern', 'atlas:*:events').strip() and redis('XLEN', redis('--scan', '--pattern', 'atlas:*:events').split()[0]).strip()}")

    # 4. The fleet's limits: a quota route and an exclusive route, one instance with the tier
    # and one without, warm, alternating.
    fleet, bases, tokens = start_fleet(1, True, "limits-tier")
    islands, island_bases, island_tokens = start_fleet(1, False, "limits-islands")
    routes = [
        ("quota (`usage = 1`, a maximum)", "/api/ai/complete", "Erin Pro", '{"prompt":"hello there"}'),
        ("exclusive (a seat already held: 201)", "/api/seats", "Alice", '{"email":"bench@standard.example"}'),
    ]
    instances = [("with the Redis tier", bases[0], tokens[0]), ("without", island_bases[0], island_tokens[0])]
    for _, path, user, body in routes:
        for _, base, token in instances:
            for _ in range(20):
                get(f"{base}{path}", {"Authorization": f"Bearer {token[user]}", "Content-Type": "application/json"}, body.encode())
    results = {}
    for connections in (32, 1):
        for _ in range(ROUNDS):
            for route, path, user, body in routes:
                for name, base, token in instances:
                    results.setdefault((route, name, connections), []).append(
                        wrk_latency(f"{base}{path}", token[user], body, connections))
    stop(fleet)
    stop(islands)
    for connections in (32, 1):
        label = "one connection" if connections == 1 else f"wrk -t2 -c{connections}"
        print(f"\n### The fleet's limits, warm ({label}, {ROUNDS} alternating rounds of {DURATION} s, means)\n")
        print("| route | instance | requests/s | p50 | p99 |")
        print("|---|---|---:|---:|---:|")
        for route, _, _, _ in routes:
            for name, _, _ in instances:
                runs = results[(route, name, connections)]
                print(f"| {route} | {name} | {statistics.mean(r[0] for r in runs):,.0f} | "
                      f"{statistics.mean(r[1] for r in runs) * 1e3:.2f} ms | {statistics.mean(r[2] for r in runs) * 1e3:.2f} ms |")
        print()
        for route, _, _, _ in routes:
            on, off = results[(route, "with the Redis tier", connections)], results[(route, "without", connections)]
            ratio = statistics.mean(r[0] for r in on) / statistics.mean(r[0] for r in off)
            extra50 = (statistics.mean(r[1] for r in on) - statistics.mean(r[1] for r in off)) * 1e3
            extra99 = (statistics.mean(r[2] for r in on) - statistics.mean(r[2] for r in off)) * 1e3
            print(f"- {route}: with / without {ratio:.2f}; the tier adds {extra50:+.2f} ms at p50, {extra99:+.2f} ms at p99")
finally:
    for process in started:
        if process.poll() is None:
            process.kill()

"""`python -m bench.gateway_visibility`: how soon a miss's entry can be read from the sidecar.

Run by `bench gateway` in a process of its own (it imports grpc through
`kong_plugin.client`). Each round, `--clients` threads each send one request for a URL never
asked before (a miss) through the gateway, with ``kong-debug: 1`` so that the answer names its
cache key (``X-Cache-Key``); from the moment the answer is read, the thread looks the key up
directly in the sidecar every `--poll-ms` until the entry is there. The delay recorded is from
the answer's arrival to the end of the first lookup that found the entry: an upper bound, by
at most one poll interval plus one lookup's round trip (``p50_ms``/``p99_ms``); the lower
bound is the end of the last lookup that did not (0 when the first one found it,
``lower_p50_ms``/``lower_p99_ms``). A lookup that hands out the fill lease
(nobody held it) gives it back at once. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
import uuid

from strata.v1 import cache_pb2 as pb

from bench.stats import percentile
from kong_plugin.client import SidecarClient

FOUND = (pb.OUTCOME_HIT, pb.OUTCOME_STALE)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gateway_visibility")
    p.add_argument("--gateway", required=True, help="HOST:PORT")
    p.add_argument("--sidecar", required=True)
    p.add_argument("--path", default="/miss")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--poll-ms", type=float, default=0.5)
    p.add_argument("--give-up-s", type=float, default=2.0)
    args = p.parse_args(argv)
    sidecar = SidecarClient(args.sidecar, timeout_s=1.0)
    host, _, port = args.gateway.rpartition(":")
    delays: list[float] = []
    lower: list[float] = []
    lookups: list[float] = []
    first_found = [0]
    lost: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()
    run_id = uuid.uuid4().hex[:8]

    def one(conn: http.client.HTTPConnection, url: str) -> None:
        conn.request("GET", url, headers={"kong-debug": "1"})
        resp = conn.getresponse()
        resp.read()
        received = time.perf_counter()
        key = resp.getheader("X-Cache-Key")
        if resp.status != 200 or not key:
            with lock:
                errors.append(f"{url}: status {resp.status}, X-Cache-Key {key!r}")
            return
        interval = args.poll_ms / 1000
        give_up = received + args.give_up_s
        last_miss = received
        while True:
            t0 = time.perf_counter()
            found = sidecar.lookup(key.encode())
            t1 = time.perf_counter()
            with lock:
                lookups.append(t1 - t0)
            if found.outcome in FOUND:
                with lock:
                    delays.append(t1 - received)
                    lower.append(last_miss - received)
                    first_found[0] += last_miss == received
                return
            last_miss = t1
            if found.fill_lease:
                sidecar.release(key.encode())
            if t1 > give_up:
                with lock:
                    lost.append(key)
                return
            time.sleep(max(0.0, t0 + interval - time.perf_counter()))

    def client(index: int, barrier: threading.Barrier) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        for r in range(args.rounds):
            barrier.wait()
            one(conn, f"{args.path}?visibility={run_id}-{r}-{index}")
        conn.close()

    barrier = threading.Barrier(args.clients)
    threads = [
        threading.Thread(target=client, args=(i, barrier), daemon=True) for i in range(args.clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sidecar.close()
    delays.sort()
    lower.sort()
    lookups.sort()
    report = {
        "n": len(delays),
        "p50_ms": round(percentile(delays, 0.5) * 1000, 3),
        "p99_ms": round(percentile(delays, 0.99) * 1000, 3),
        "max_ms": round(delays[-1] * 1000, 3) if delays else float("nan"),
        "lower_p50_ms": round(percentile(lower, 0.5) * 1000, 3),
        "lower_p99_ms": round(percentile(lower, 0.99) * 1000, 3),
        # found by the first lookup sent once the answer had arrived: visible no later
        # than the client could ask again (the bounds above are then the lookups' own time)
        "found_at_first_lookup": first_found[0],
        "not_visible_within_s": {"s": args.give_up_s, "count": len(lost)},
        "errors": errors[:5],
        "sidecar_lookup_p50_us": round(percentile(lookups, 0.5) * 1e6, 1),
        "poll_ms": args.poll_ms,
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

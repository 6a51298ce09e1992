"""Client side of `python -m bench lookup`, run in its own process per variant.

grpc reads its environment once at import, so each variant's client runs in a fresh
process whose environment the parent set. Measures sidecar lookups and redis-py GETs of the
same 2 KB value, interleaved, sequentially and with N threads. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable

from bench.stats import median_of, summarize


def sequential(fn: Callable[[], object], n: int) -> dict[str, float]:
    lat = []
    t_start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        lat.append(time.perf_counter() - t0)
    return summarize(lat, time.perf_counter() - t_start)


def concurrent(
    make_fn: Callable[[], Callable[[], object]], threads: int, seconds: float
) -> dict[str, float]:
    lats: list[list[float]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)
    stop_at = [0.0]

    def worker(i: int) -> None:
        fn = make_fn()
        fn()
        barrier.wait()
        mine = lats[i]
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at[0]:
                return
            fn()
            mine.append(time.perf_counter() - t0)

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    stop_at[0] = time.perf_counter() + 3600
    barrier.wait()
    t_start = time.perf_counter()
    stop_at[0] = t_start + seconds
    for t in ts:
        t.join()
    return summarize([x for m in lats for x in m], time.perf_counter() - t_start)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--address", required=True)
    p.add_argument("--mode", choices=["stream", "mux", "unary"], default="stream")
    p.add_argument("--redis-url", required=True)
    p.add_argument("--key", default="v1:bench:2k")
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--seconds", type=float, default=4.0)
    a = p.parse_args(argv)

    # `strata` first: it applies the transport defaults, which grpc reads only at import.
    import strata  # noqa: PLC0415, F401

    # isort: split
    import grpc  # noqa: PLC0415
    import redis  # noqa: PLC0415
    from strata.v1 import cache_pb2 as pb  # noqa: PLC0415
    from strata.v1 import cache_pb2_grpc as pb_grpc  # noqa: PLC0415

    from bench.mux_transport import MuxClient  # noqa: PLC0415
    from kong_plugin.client import SidecarClient  # noqa: PLC0415

    key = a.key.encode()
    client_class = MuxClient if a.mode == "mux" else SidecarClient
    client = client_class(a.address, timeout_s=5.0)
    channel = grpc.insecure_channel(a.address)
    stub = pb_grpc.CacheServiceStub(channel)
    lookup_req = pb.LookupRequest(key=key)

    def sidecar_fn() -> Callable[[], object]:
        if a.mode == "unary":
            return lambda: stub.Lookup(lookup_req, timeout=5.0)
        return lambda: client.lookup(key)

    pool = redis.ConnectionPool.from_url(a.redis_url, max_connections=a.threads + 4)
    r = redis.Redis(connection_pool=pool)

    def redis_fn() -> Callable[[], object]:
        return lambda: r.get(a.key)

    probe = sidecar_fn()()
    outcome = probe.outcome if hasattr(probe, "outcome") else None
    if outcome != pb.OUTCOME_HIT or r.get(a.key) is None:
        print(json.dumps({"error": "the benchmark value is not in place"}))
        return 1
    for fn in (sidecar_fn(), redis_fn()):
        sequential(fn, 500)

    seq_s, seq_r, conc_s, conc_r = [], [], [], []
    for _ in range(a.rounds):
        seq_s.append(sequential(sidecar_fn(), a.n))
        seq_r.append(sequential(redis_fn(), a.n))
        conc_s.append(concurrent(sidecar_fn, a.threads, a.seconds))
        conc_r.append(concurrent(redis_fn, a.threads, a.seconds))
    out = {
        "sequential": {"sidecar": median_of(seq_s), "redis": median_of(seq_r)},
        f"threads_{a.threads}": {"sidecar": median_of(conc_s), "redis": median_of(conc_r)},
    }
    client.close()
    channel.close()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

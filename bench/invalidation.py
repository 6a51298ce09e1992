"""Invalidation latency: from a purge to "every node answers a miss", with 2 and 4 sidecars.

The sidecars share Redis (tier and purge generations) and one broker. Each round stores one
entry with a fresh tag on every node (each node's own memory copy), then triggers a purge
of the tag while a thread per node looks the key up in a loop; the round's latency is the
time from the trigger to the last node's first miss. Measured in one run:

* ``event``: an outside producer publishes a v1 event (as ``kcat`` would);
* ``write``: a purge through one node's Invalidate RPC (the plugin's write-through path);
* ``baseline``: the same write with no broker, the path before events: other nodes learn
  it from the Redis generations they cache for ``generations_cache_ms`` (1 s);
* ``update``: an ``UPDATE`` of a row, published by ``strata cdc``.

Prints JSON: p50/p99 in ms per scenario and node count, the ratio of each p99 to the
baseline's, and whether the targets hold (publish -> every node p99 <= 100 ms, UPDATE ->
every node p99 <= 500 ms). Uses the servers of ``make services-up`` when they run, else
starts private ones (Redis, PostgreSQL, the broker) and stops them at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.procs import clean_env
from bench.stats import percentile

TARGET_PUBLISH_P99_MS = 100.0
TARGET_UPDATE_P99_MS = 500.0
NEEDED = ("STRATA_TEST_REDIS_URL", "STRATA_TEST_POSTGRES_DSN", "STRATA_TEST_KAFKA_BOOTSTRAP")
#: A round whose purge did not reach every node within this is reported as such.
ROUND_TIMEOUT_S = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=60, help="rounds per scenario and size")
    parser.add_argument("--baseline-rounds", type=int, default=12)
    parser.add_argument("--nodes", default="2,4", help="cluster sizes, comma-separated")
    parser.add_argument("--no-cdc", action="store_true", help="skip the UPDATE scenario")
    parser.add_argument("--private", action="store_true", help="always start private servers")


@contextlib.contextmanager
def servers(private: bool) -> Iterator[dict[str, str]]:
    """The addresses of Redis, PostgreSQL and the broker (see the module docstring)."""
    from tools import services  # noqa: PLC0415

    env = {} if private else services.load_env()
    if all(env.get(name) for name in NEEDED):
        yield env
        return
    with tempfile.TemporaryDirectory(prefix="strata-bench-inv-") as tmp:
        run_dir = Path(tmp)
        only = ["redis", "postgres", "tansu"]
        try:
            services.up(run_dir, only=only)
            yield services.load_env(run_dir)
        finally:
            services.down(run_dir, only=only)


def one_round(nodes: Sequence[Any], key: bytes, tag: str, trigger: Callable[[], object]) -> float:
    """Seconds from `trigger` to the last node's first miss of `key` (inf: not within
    `ROUND_TIMEOUT_S`)."""
    for node in nodes:
        node.store(key, [tag])
    for node in nodes:
        if node.outcome(key) != "HIT":
            raise RuntimeError(f"node {node.index} does not hold the entry it just stored")
    missed: list[float] = [float("inf")] * len(nodes)
    ready = threading.Barrier(len(nodes) + 1)
    started = [0.0]

    def poll(i: int, node: Any) -> None:
        ready.wait()
        while time.perf_counter() - started[0] < ROUND_TIMEOUT_S:
            if node.outcome(key) == "MISS":
                missed[i] = time.perf_counter()
                node.release(key)
                return
            time.sleep(0.0005)

    threads = [threading.Thread(target=poll, args=(i, n)) for i, n in enumerate(nodes)]
    for t in threads:
        t.start()
    started[0] = time.perf_counter()
    ready.wait()
    trigger()
    for t in threads:
        t.join()
    return max(missed) - started[0]


def summary(latencies: Sequence[float]) -> dict[str, float]:
    done = sorted(x * 1000 for x in latencies if x != float("inf"))
    out = {"rounds": float(len(latencies)), "not_reached": float(len(latencies) - len(done))}
    if done:
        out |= {
            "p50_ms": round(percentile(done, 0.50), 2),
            "p99_ms": round(percentile(done, 0.99), 2),
        }
        out["max_ms"] = round(done[-1], 2)
    return out


def node_settings(env: dict[str, str], topic: str | None) -> dict[str, str]:
    settings = {
        "redis_url": env["STRATA_TEST_REDIS_URL"],
        "namespace": f"binv{uuid.uuid4().hex[:8]}",
    }
    if topic is not None:
        settings |= {"kafka_bootstrap": env["STRATA_TEST_KAFKA_BOOTSTRAP"], "kafka_topic": topic}
    return settings


def wait_consumers(
    nodes: Sequence[Any], publish: Callable[[str], None], timeout: float = 60
) -> None:
    """Until an event published now reaches every node (their consumers hold the topic)."""
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        n += 1
        tag = f"warm-{uuid.uuid4().hex}"
        if one_round(nodes, f"warm:{n}".encode(), tag, functools.partial(publish, tag)) < 2.0:
            return
    raise RuntimeError("the nodes' consumers did not get events within 60 s")


@contextlib.contextmanager
def cluster_of(count: int, settings: dict[str, str]) -> Iterator[Any]:
    from tools.stack.nodes import SidecarNodes  # noqa: PLC0415

    with (
        tempfile.TemporaryDirectory(prefix="strata-bench-nodes-") as tmp,
        SidecarNodes(count, Path(tmp), settings, env=clean_env()) as cluster,
    ):
        yield cluster


def measure_cluster(
    env: dict[str, str], count: int, rounds: int, baseline_rounds: int, cdc: bool
) -> dict[str, Any]:
    from confluent_kafka import Producer  # noqa: PLC0415

    out: dict[str, Any] = {}
    topic = f"strata.bench.{uuid.uuid4().hex[:10]}"
    producer = Producer({"bootstrap.servers": env["STRATA_TEST_KAFKA_BOOTSTRAP"], "linger.ms": 0})

    def publish(tag: str) -> None:
        producer.produce(topic, json.dumps({"v": 1, "tags": [tag]}).encode())
        producer.flush(5)

    with cluster_of(count, node_settings(env, topic)) as cluster:
        nodes = cluster.nodes
        wait_consumers(nodes, publish)
        # node 0's producer gets its producer id on its first send (0.5-1 s): not measured
        tag = f"warm-{uuid.uuid4().hex}"
        one_round(nodes, b"warm:write", tag, functools.partial(nodes[0].invalidate_tag, tag))
        runs: dict[str, list[float]] = {"event": [], "write": []}
        for r in range(rounds):  # interleaved: both see the same noise
            tag = f"ev-{uuid.uuid4().hex}"
            runs["event"].append(
                one_round(nodes, f"ev:{r}".encode(), tag, functools.partial(publish, tag))
            )
            tag = f"wr-{uuid.uuid4().hex}"
            runs["write"].append(
                one_round(
                    nodes, f"wr:{r}".encode(), tag, functools.partial(nodes[0].invalidate_tag, tag)
                )
            )
        out |= {name: summary(values) for name, values in runs.items()}
        if cdc:
            out["update"] = summary(measure_update(env, nodes, topic, rounds))
    with cluster_of(count, node_settings(env, None)) as cluster:
        nodes = cluster.nodes
        base = []
        for r in range(baseline_rounds):
            tag = f"bl-{uuid.uuid4().hex}"
            base.append(
                one_round(
                    nodes, f"bl:{r}".encode(), tag, functools.partial(nodes[0].invalidate_tag, tag)
                )
            )
        out["baseline"] = summary(base)
    return out


def measure_update(
    env: dict[str, str], nodes: Sequence[Any], topic: str, rounds: int
) -> list[float]:
    """UPDATE -> `strata cdc` -> every node misses; the cdc process and its slot, publication
    and table are made for this run and dropped after it."""
    import psycopg  # noqa: PLC0415

    dsn = env["STRATA_TEST_POSTGRES_DSN"]
    suffix = uuid.uuid4().hex[:8]
    table, slot = f"bench_items_{suffix}", f"strata_bench_{suffix}"
    with psycopg.connect(dsn, autocommit=True) as db:
        # the slot sees a commit once its WAL is flushed: as a production server does
        db.execute("SET synchronous_commit = on")
        db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v int NOT NULL)")
        db.execute(f"INSERT INTO {table} SELECT g, 0 FROM generate_series(1, {rounds + 100}) g")
        cdc_argv = [
            sys.executable, "-m", "sidecar.commands", "cdc", "--dsn", dsn, "--slot", slot,
            "--tables", table, "--kafka-bootstrap", env["STRATA_TEST_KAFKA_BOOTSTRAP"],
            "--topic", topic,
        ]  # fmt: skip
        log = Path(tempfile.gettempdir()) / f"{slot}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(cdc_argv, env=clean_env(), stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while not db.execute(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            ).fetchone():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"strata cdc did not start: {log.read_text()[-2000:]}")
                time.sleep(0.1)

            def update(i: int) -> None:
                db.execute(f"UPDATE {table} SET v = v + 1 WHERE id = %s", (i,))

            warm = one_round(
                nodes, b"upd:warm", f"{table}:{rounds + 1}", lambda: update(rounds + 1)
            )
            if warm == float("inf"):
                raise RuntimeError(f"no UPDATE reached the nodes: {log.read_text()[-2000:]}")
            return [
                one_round(nodes, f"upd:{i}".encode(), f"{table}:{i}", functools.partial(update, i))
                for i in range(1, rounds + 1)
            ]
        finally:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(15)
            if proc.poll() is None:
                proc.kill()
            subprocess.run(
                [*cdc_argv, "--drop-slot"],
                env=clean_env(),
                capture_output=True,
                timeout=60,
                check=False,
            )
            db.execute(f"DROP TABLE IF EXISTS {table}")
            with contextlib.suppress(Exception):
                db.execute("SELECT pg_drop_replication_slot(%s)", (slot,))


def ratios(result: dict[str, Any]) -> dict[str, float]:
    out = {}
    base = result.get("baseline", {}).get("p99_ms")
    for name in ("event", "write", "update"):
        p99 = result.get(name, {}).get("p99_ms")
        if base and p99 is not None:
            out[f"{name}_p99/baseline_p99"] = round(p99 / base, 3)
    return out


def run(args: argparse.Namespace) -> int:
    sizes = [int(x) for x in args.nodes.split(",") if x]
    report: dict[str, Any] = {"scenario": "invalidation", "pid": os.getpid()}
    with servers(args.private) as env:
        for count in sizes:
            result = measure_cluster(env, count, args.rounds, args.baseline_rounds, not args.no_cdc)
            result["ratios"] = ratios(result)
            report[f"nodes_{count}"] = result
    publish = [
        report[f"nodes_{c}"][s].get("p99_ms", float("inf"))
        for c in sizes
        for s in ("event", "write")
    ]
    targets = {"publish_to_all_p99_ms<=100": max(publish) <= TARGET_PUBLISH_P99_MS}
    if not args.no_cdc:
        update = [report[f"nodes_{c}"]["update"].get("p99_ms", float("inf")) for c in sizes]
        targets["update_to_all_p99_ms<=500"] = max(update) <= TARGET_UPDATE_P99_MS
    report["targets"] = targets
    print(json.dumps(report, indent=2))
    return 0

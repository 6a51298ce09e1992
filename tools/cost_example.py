"""The worked example of docs/cost.md: a small cluster under a skewed read mix, then
`strata cost` read from the sidecars' /metrics and from a Prometheus server scraping them.

    python -m tools.cost_example [--seconds 75] [--redis-max-bytes SIZE] [--json-out PATH]

What it runs, all on 127.0.0.1 and all its own except the Redis server of
`make services-up` (``STRATA_TEST_REDIS_URL``):

* two sidecars (`tools.stack.SidecarProcess`) with a memory tier of 8 MiB each and the
  shared Redis under a namespace of their own (``costXXXXXXXX``, fresh per run), and with
  ``--redis-max-bytes`` a Strata budget of Redis (then the room rule applies: while Redis's
  ``used_memory`` is below ``shared_room_fraction`` of the budget, entries go there from their
  first lookup);
* a private Prometheus (the ``prometheus`` binary on PATH, as `tools.services` runs it)
  scraping both every second, in a temp dir;
* for ``--seconds``: batches of 50 reads (then a 50 ms pause) through gRPC
  (`kong_plugin.client.SidecarClient`), each on a node picked at random, of one of 400
  product pages (2-12 KiB of JSON) picked with Zipf popularity (alpha 0.9), cached per
  consumer (4 consumers: the same body under 4 keys); a miss is stored at once, as the
  plugin would after fetching the page from the origin;
* then the cost report from both sidecars' /metrics (counters since they started) and from
  Prometheus over the last minute, each read once and printed as the table ``strata cost``
  prints, with the command line that gives it. ``--json-out`` writes both as ``strata cost
  --json`` would, with the run's own figures (``run``: requests, misses, the namespace, the
  Redis server's ``used_memory`` before and after, each memory tier's entries, and what the
  namespace held in Redis once the sidecars stopped: keys by kind, ``MEMORY USAGE``).

It cleans up what it made, whatever happens after the start: the processes, the temp dir
and every Redis key of its namespace (``costXXXXXXXX:*``, after the sidecars stopped).
Exit codes: 0 ok; 1 a step failed (a sidecar or Prometheus did not start, a report could not
be read); 2 usage error, or the services are not up (run ``make services-up``).

Not guaranteed: the same figures twice. The load runs for a time, not a count, so the
number of requests depends on the machine's speed (the page sequence is seeded, the node
and timing are not); Redis ``used_memory`` is the whole test server's, whatever other runs
left there. A run killed with SIGKILL leaves its processes, temp dir and keys behind (the
namespace is printed first, on stderr, so they can be found).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis
from prometheus_client.parser import text_string_to_metric_families

from sidecar.config.values import parse_size
from sidecar.cost.model import Prices, compute
from sidecar.cost.render import as_json, table
from sidecar.cost.sources import SourceError, read_pages, read_prometheus
from tools.services import ServiceError, load_env, resolve_run_dir
from tools.services.procs import free_port, which
from tools.stack import SidecarProcess, SidecarStartError

__all__ = ["Load", "main", "product_body", "run_load"]

NODES = 2
MEMORY_MAX_BYTES = "8MiB"
PRODUCTS = 400
CONSUMERS = 4
ZIPF_ALPHA = 0.9
BATCH = 50
PAUSE_S = 0.05
SEED = 7
TTL_MS = 600_000
PROM_JOB = "strata-cost-example"
PROM_RANGE_S = 60.0
#: How long Prometheus may take to answer, and to have scraped both sidecars.
PROM_READY_S = 60.0
HOST = "127.0.0.1"


class UsageError(Exception):
    """A bad argument, or the services are not up (exit 2)."""


class StepError(Exception):
    """A step of the run failed (exit 1)."""


def product_body(product: int) -> bytes:
    """The JSON page of `product` (2-12 KiB): the same bytes for the same product."""
    reviews = [
        {
            "user": f"u{(product * 31 + j) % 977}",
            "stars": (product + j) % 5 + 1,
            "text": "great value " * ((product + j) % 7 + 1),
        }
        for j in range(20 + product % 80)
    ]
    return json.dumps({"id": product, "name": f"product {product}", "reviews": reviews}).encode()


@dataclass(frozen=True)
class Load:
    """What the client did: lookups sent, misses among them (each followed by a store)."""

    requests: int
    misses: int
    seconds: float


def run_load(addresses: Sequence[str], seconds: float, seed: int = SEED) -> Load:
    """Reads through gRPC for `seconds` (see the module doc); stores each miss."""
    from strata.v1 import cache_pb2 as pb  # noqa: PLC0415 - generated, heavy

    from kong_plugin.client import SidecarClient  # noqa: PLC0415

    rng = random.Random(seed)
    weights = [1 / (rank + 1) ** ZIPF_ALPHA for rank in range(PRODUCTS)]
    headers = [
        pb.Header(name=b"content-type", value=b"application/json"),
        pb.Header(name=b"cache-control", value=b"public, max-age=600"),
    ]
    clients = [SidecarClient(a, timeout_s=10.0) for a in addresses]
    requests = misses = 0
    started = time.monotonic()
    try:
        while time.monotonic() - started < seconds:
            for _ in range(BATCH):
                client = clients[rng.randrange(len(clients))]
                product = rng.choices(range(PRODUCTS), weights)[0]
                consumer = rng.randrange(CONSUMERS)
                key = b"v2:GET:shop:/products/%d?consumer=%d" % (product, consumer)
                if client.lookup(key).outcome == pb.OUTCOME_MISS:
                    misses += 1
                    entry = pb.Entry(
                        status=200, headers=headers, body=product_body(product), ttl_ms=TTL_MS
                    )
                    client.store(key, entry)
                requests += 1
            time.sleep(PAUSE_S)
    finally:
        for client in clients:
            client.close()
    return Load(requests, misses, time.monotonic() - started)


# ---------------------------------------------------------------------- Prometheus


def write_prometheus_config(path: Path, targets: Sequence[str]) -> None:
    """A configuration scraping `targets` every second as job `PROM_JOB` (JSON is YAML)."""
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [{"job_name": PROM_JOB, "static_configs": [{"targets": list(targets)}]}],
    }
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def prometheus_query(url: str, promql: str) -> list[dict[str, Any]]:
    """The result vector of an instant query; [] while Prometheus cannot answer."""
    query = urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=5) as resp:
            body = json.load(resp)
    except (OSError, ValueError):
        return []
    result: list[dict[str, Any]] = body.get("data", {}).get("result", [])
    return result


def wait_scraped(url: str, targets: int, after: float, proc: subprocess.Popen[bytes]) -> None:
    """Until Prometheus holds, for each of `targets` sidecars, a scrape that started at or
    after the wall time `after`; `StepError` if it exits or `PROM_READY_S` pass."""
    deadline = time.monotonic() + PROM_READY_S
    promql = f'timestamp(up{{job="{PROM_JOB}"}} == 1)'
    while True:
        stamps = [float(s["value"][1]) for s in prometheus_query(url, promql)]
        if len(stamps) >= targets and min(stamps) >= after:
            return
        if proc.poll() is not None:
            raise StepError(f"prometheus exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise StepError(f"prometheus at {url} did not scrape {targets} sidecars in time")
        time.sleep(0.5)


# ---------------------------------------------------------------------- Redis


def redis_used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def delete_namespace(client: redis.Redis, namespace: str) -> int:
    """UNLINK every key ``namespace:*``; how many there were."""
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{namespace}:*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            deleted += int(client.unlink(*batch))
            batch.clear()
    if batch:
        deleted += int(client.unlink(*batch))
    return deleted


@dataclass(frozen=True)
class Census:
    """What the namespace holds in Redis: keys by kind (the letter after ``ns:``: ``e``
    entries, ``b`` shared bodies, ...) and the sum of their ``MEMORY USAGE``."""

    keys: dict[str, int]
    memory_usage_bytes: int


def census(client: redis.Redis, namespace: str) -> Census:
    """Count the keys ``namespace:*`` by kind and sum their ``MEMORY USAGE`` (a key that
    expires meanwhile counts 0 bytes)."""
    names = list(client.scan_iter(match=f"{namespace}:*", count=1000))
    kinds: dict[str, int] = {}
    for name in names:
        kind = name[len(namespace) + 1 :].split(b":", 1)[0].decode(errors="replace")
        kinds[kind] = kinds.get(kind, 0) + 1
    used = 0
    for start in range(0, len(names), 500):
        pipe = client.pipeline(transaction=False)
        for name in names[start : start + 500]:
            pipe.memory_usage(name)
        used += sum(int(n or 0) for n in pipe.execute())
    return Census(dict(sorted(kinds.items())), used)


def connect_redis(env: dict[str, str]) -> tuple[str, redis.Redis]:
    """The services' Redis URL and a client that answered PING; `UsageError` otherwise."""
    url = env.get("STRATA_TEST_REDIS_URL")
    where = resolve_run_dir() / "services.env"
    if not url:
        raise UsageError(f"no STRATA_TEST_REDIS_URL in {where}: run `make services-up` first")
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        raise UsageError(f"Redis at {url} does not answer ({exc}): run `make services-up`") from exc
    return url, client


# ---------------------------------------------------------------------- the run


@dataclass(frozen=True)
class Report:
    """One source's report: the command an operator would type, its table and JSON."""

    command: str
    table: str
    json: dict[str, Any]


def memory_entries(metrics_url: str) -> int:
    """``strata_tier_entries{tier="memory"}`` of one sidecar's /metrics page."""
    with urllib.request.urlopen(f"{metrics_url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "strata_tier_entries" and sample.labels.get("tier") == "memory":
                return int(sample.value)
    raise StepError(f'{metrics_url}/metrics has no strata_tier_entries{{tier="memory"}}')


def cost_report(command: str, metrics: Sequence[str] = (), prometheus: str = "") -> Report:
    """Read the source once and render it both ways, at the default prices."""
    try:
        if metrics:
            readings, notes = read_pages(metrics, None)
        else:
            readings, notes = read_prometheus(prometheus, PROM_RANGE_S)
        report = compute(readings, Prices())
    except (SourceError, ValueError) as exc:
        raise StepError(f"strata cost: {exc}") from exc
    return Report(command, table(report, notes), as_json(report, notes))


@contextlib.contextmanager
def started(proc: SidecarProcess) -> Iterator[SidecarProcess]:
    try:
        yield proc.start()
    finally:
        proc.close()


@contextlib.contextmanager
def prometheus(
    workdir: Path, targets: Sequence[str]
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A private Prometheus scraping `targets`: (its URL, its process), stopped on exit."""
    config = workdir / "prometheus.yml"
    write_prometheus_config(config, targets)
    port = free_port()
    argv = [
        which("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'prometheus'}",
        f"--web.listen-address={HOST}:{port}",
    ]
    with (workdir / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        yield f"http://{HOST}:{port}", proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def sidecar_env() -> dict[str, str]:
    """This process's environment without any ``STRATA_`` setting (the flags decide)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}


def run(seconds: float, redis_max_bytes: str | None, json_out: Path | None) -> int:
    redis_url, rclient = connect_redis(load_env())
    namespace = "cost" + uuid.uuid4().hex[:8]
    print(f"namespace {namespace} on {redis_url}", file=sys.stderr)
    workdir = Path(tempfile.mkdtemp(prefix="strata-cost-", dir="/tmp"))
    settings = {
        "redis_url": redis_url,
        "namespace": namespace,
        "memory_max_bytes": MEMORY_MAX_BYTES,
    }
    if redis_max_bytes is not None:
        settings["redis_max_bytes"] = redis_max_bytes
    used_before = redis_used_memory(rclient)
    try:
        with contextlib.ExitStack() as stack:
            metrics: list[str] = []
            addresses: list[str] = []
            for i in range(NODES):
                port = free_port()
                address = f"unix:{workdir}/s{i}.sock"
                proc = SidecarProcess(
                    address,
                    env=sidecar_env(),
                    metrics_listen=f"{HOST}:{port}",
                    log_level="WARNING",
                    settings=settings,
                )
                stack.enter_context(started(proc))
                addresses.append(address)
                metrics.append(f"http://{HOST}:{port}")
            prom_url, prom = stack.enter_context(
                prometheus(workdir, [m.removeprefix("http://") for m in metrics])
            )
            wait_scraped(prom_url, NODES, time.time(), prom)
            load = run_load(addresses, seconds)
            print(f"{load.requests} requests, {load.misses} misses", file=sys.stderr)
            wait_scraped(prom_url, NODES, time.time() + 1.0, prom)
            flags = " ".join(f"--metrics {m}" for m in metrics)
            reports = [
                cost_report(f"strata cost {flags}", metrics=metrics),
                cost_report(f"strata cost --prometheus {prom_url} --range 1m", prometheus=prom_url),
            ]
            entries = [memory_entries(m) for m in metrics]
        held = census(rclient, namespace)  # the sidecars have stopped: nothing changes now
        used_after = redis_used_memory(rclient)
        print(
            f"memory tier entries by node: {entries}; the namespace in Redis: "
            f"{held.keys} keys, {held.memory_usage_bytes:,} bytes (MEMORY USAGE)",
            file=sys.stderr,
        )
        print(
            f"Redis used_memory (whole server): {used_before:,} bytes before, {used_after:,} after",
            file=sys.stderr,
        )
        for report in reports:
            print(f"$ {report.command}\n{report.table}\n")
        if json_out is not None:
            document = {
                "run": {
                    **asdict(load),
                    "namespace": namespace,
                    "nodes": NODES,
                    "memory_max_bytes": parse_size(MEMORY_MAX_BYTES),
                    "redis_max_bytes": parse_size(redis_max_bytes) if redis_max_bytes else 0,
                    "redis_used_memory_before": used_before,
                    "redis_used_memory_after": used_after,
                    "memory_entries_by_node": entries,
                    "redis_keys_by_kind": held.keys,
                    "redis_namespace_memory_usage_bytes": held.memory_usage_bytes,
                },
                "metrics": {"command": reports[0].command, **reports[0].json},
                "prometheus": {"command": reports[1].command, **reports[1].json},
            }
            json_out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    except (SidecarStartError, ServiceError) as exc:
        raise StepError(str(exc)) from exc
    finally:
        deleted = delete_namespace(rclient, namespace)
        rclient.close()
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"cleaned up: {deleted} Redis keys of {namespace}, {workdir}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.cost_example",
        description="Run docs/cost.md's worked example: two sidecars and a private "
        "Prometheus under a Zipf read mix, then `strata cost` from both sources.",
    )
    parser.add_argument("--seconds", type=float, default=75.0, help="load duration (75)")
    parser.add_argument(
        "--redis-max-bytes",
        metavar="SIZE",
        help="Strata's budget of Redis (e.g. 256MiB): turns the room rule on",
    )
    parser.add_argument("--json-out", type=Path, metavar="PATH", help="write both reports")
    return parser


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the cleanup


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminated)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        if not 0 < args.seconds <= 3600:
            raise UsageError("--seconds must be in (0, 3600]")
        if args.redis_max_bytes is not None:
            try:
                if parse_size(args.redis_max_bytes) <= 0:
                    raise ValueError(f"not a positive size: {args.redis_max_bytes!r}")
            except ValueError as exc:
                raise UsageError(f"--redis-max-bytes: {exc}") from None
        return run(args.seconds, args.redis_max_bytes, args.json_out)
    except UsageError as exc:
        print(f"cost_example: {exc}", file=sys.stderr)
        return 2
    except StepError as exc:
        print(f"cost_example: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

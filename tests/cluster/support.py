"""What the cluster tests share: one HTTP answer type, requests with the one Host header every
node sees (NGINX passes the client's host on, so a key is the same on every node), the
figures they report, and a seeded Zipf workload."""

from __future__ import annotations

import bisect
import itertools
import math
import random
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.sidecar import clean_env
from tools.cluster import Cluster

#: The Host header of every request: the cache key includes the host, and a test that sends
#: requests to each node's own port must not make them different keys.
HOST = {"Host": "api.example"}


@dataclass(frozen=True)
class Answer:
    status: int
    cache: str  # X-Cache-Status ('' when absent)
    body: bytes


async def get(http: aiohttp.ClientSession, base: str, path: str) -> Answer:
    async with http.get(base + path, headers=HOST) as resp:
        return Answer(resp.status, resp.headers.get("X-Cache-Status", ""), await resp.read())


async def put(http: aiohttp.ClientSession, base: str, path: str, data: Any) -> Answer:
    async with http.put(base + path, headers=HOST, json=data) as resp:
        return Answer(resp.status, resp.headers.get("X-Cache-Status", ""), await resp.read())


@contextmanager
def cluster_dir() -> Iterator[Path]:
    """A short run folder (unix socket paths are limited to 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="strata-cl-", dir="/tmp") as d:
        yield Path(d)


def cluster(workdir: Path, **options: Any) -> Cluster:
    """A `Cluster` as the tests run it: the plugin's sidecar deadline raised from kong.yml's
    50 ms to 250 ms (this machine is small and busy; a missed deadline is a Bypass, which
    the tests would read as a miss), sidecars logging warnings, without this process's
    ``STRATA_*`` settings."""
    options.setdefault("plugin_sidecar", {"timeout_ms": 250})
    return Cluster(workdir, sidecar_env=clean_env(), **options)


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank `q` percentile (0 < q <= 100) of `values`."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def zipf_keys(keys: int, requests: int, alpha: float, seed: int) -> list[int]:
    """`requests` key numbers in 0..keys-1, key k drawn with weight 1/(k+1)^alpha."""
    rng = random.Random(seed)
    cumulative = list(itertools.accumulate(1 / (k + 1) ** alpha for k in range(keys)))
    total = cumulative[-1]
    return [bisect.bisect_left(cumulative, rng.random() * total) for _ in range(requests)]


def report(capsys: pytest.CaptureFixture[str], record: Any, name: str, text: str) -> None:
    """Show a measured figure in the test run's output and record it as a property (junit)."""
    record(name, text)
    with capsys.disabled():
        print(f"\n[cluster] {name}: {text}", flush=True)


async def metric_sum(http: aiohttp.ClientSession, url: str, name: str, **labels: str) -> float:
    """The sum of the samples of metric `name` at `url` (Prometheus text) whose labels
    include `labels`."""
    async with http.get(url) as resp:
        text = await resp.text()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total

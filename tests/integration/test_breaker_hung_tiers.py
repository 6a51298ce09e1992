"""A hung or killed shared tier under lookups whose clients give up first.

The plugin's client (stream mode, 50 ms deadline: the default) sends lookups from 8
threads through the real gRPC service to an engine over a private PostgreSQL or Redis,
which is then hung (SIGSTOP of every process: connections stay open, nothing answers) or
killed. Before, PostgreSQL's 200 ms statement deadline outlived the client's 50 ms: every
lookup was cancelled while in the tier, the breaker never counted one and never opened,
and every lookup without a memory hit failed at the client. Now a lookup's tier reads fit
inside the client's deadline, a call that misses it (or is cancelled in the tier) counts
as a failure, and the circuit opens after the threshold; calls skipped while it is open
are counted as skips, not errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from kong_plugin.client import SidecarClient, SidecarError
from sidecar.app import build_engine, max_message_bytes, open_tiers
from sidecar.config import SidecarConfig
from sidecar.core.clock import SystemClock
from sidecar.engine.engine import Engine
from sidecar.observability.metrics import CIRCUIT_STATE_VALUES, PrometheusObserver
from sidecar.rpc.server import create_server, set_serving
from sidecar.tiers.breaker import OPEN
from tests.integration.servers import start_redis
from tests.integration.test_tier_postgres import Cluster
from tools import services
from tools.stack import free_port

pytestmark = pytest.mark.integration

CLIENTS = 8
CLIENT_DEADLINE_S = 0.05  # the plugin's default sidecar.timeout_ms
THRESHOLD = 5
#: Generous bound on the time to open the circuit (it takes ~THRESHOLD budgets of 40 ms).
OPEN_BOUND_S = 5.0


@dataclass
class Load:
    """Lookups of missing keys from CLIENTS threads until `stop` is set."""

    client: SidecarClient
    stop: threading.Event = field(default_factory=threading.Event)
    sent: int = 0
    failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.client.lookup(b"v1:r:" + uuid.uuid4().hex.encode())
                ok = True
            except SidecarError:
                ok = False
            with self.lock:
                self.sent += 1
                self.failed += not ok


@dataclass
class Stack:
    engine: Engine
    registry: CollectorRegistry
    address: str

    def circuit_open(self, tier: str) -> bool:
        return self.sample("strata_tier_circuit_state", tier=tier) == CIRCUIT_STATE_VALUES[OPEN]

    def sample(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


async def start_stack(
    config: SidecarConfig,
) -> tuple[Stack, Callable[[], Awaitable[None]]]:
    registry = CollectorRegistry()
    engine = build_engine(config, SystemClock(), PrometheusObserver(registry))
    await open_tiers(engine)
    running = create_server(engine, "127.0.0.1:0", max_message_bytes(config))
    await running.server.start()
    await set_serving(running, True)

    async def stop() -> None:
        await running.server.stop(0)
        await engine.close()

    return Stack(engine, registry, running.address), stop


async def hang_and_load(stack: Stack, tier: str, hang: Callable[[], object]) -> None:
    """Hang the tier under load; the circuit must open, then the load must mostly be
    answered in time, and skipped calls must not count as errors."""
    client = SidecarClient(stack.address, CLIENT_DEADLINE_S)
    for _ in range(5):  # streams and connections opened (a generous deadline: not measured)
        await asyncio.to_thread(client.lookup, b"v1:r:warm", None, 0, 2.0)
    load = Load(client)
    threads = [threading.Thread(target=load.run, daemon=True) for _ in range(CLIENTS)]
    hang()
    t0 = time.monotonic()
    for t in threads:
        t.start()
    try:
        while not stack.circuit_open(tier) and time.monotonic() - t0 < OPEN_BOUND_S:
            await asyncio.sleep(0.005)
        assert stack.circuit_open(tier), (
            f"{tier} circuit still closed after {load.sent} lookups "
            f"({load.failed} failed at the client)"
        )
        errors = stack.sample("strata_tier_errors_total", tier=tier, operation="get")
        sent, failed = load.sent, load.failed
        await asyncio.sleep(1.0)  # circuit open (open_for_s = 2 s): no probe in between
        assert load.sent - sent > 50
        assert (load.failed - failed) / (load.sent - sent) < 0.2
        # only calls already in the tier when it tripped fail later; the rest are skips
        late = stack.sample("strata_tier_errors_total", tier=tier, operation="get") - errors
        assert late <= CLIENTS
        skipped = stack.sample("strata_tier_skipped_total", tier=tier, reason="circuit_open")
        assert skipped >= load.sent - sent - CLIENTS
    finally:
        load.stop.set()
        for t in threads:
            await asyncio.to_thread(t.join, 5)
        client.close()


def _pg_pids(c: Cluster) -> list[int]:
    main = int((c.root / "data" / "postmaster.pid").read_text().split()[0])
    children = subprocess.run(
        ["pgrep", "-P", str(main)], capture_output=True, text=True, check=False
    ).stdout.split()
    return [main, *map(int, children)]


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


@pytest.fixture
async def postgres_stack() -> AsyncIterator[tuple[Stack, Cluster]]:
    """A private PostgreSQL cluster (stopped and removed at the end) and a stack over it."""
    try:
        services.pg_bin()
    except services.ServiceError as exc:
        pytest.skip(str(exc))
    root = Path(tempfile.mkdtemp(prefix="strata-hung-", dir="/tmp"))
    cluster = Cluster(root, free_port())
    try:
        await asyncio.to_thread(cluster.initdb)
        await cluster.start()
        async with _stack_over(cluster) as stack:
            yield stack, cluster
    finally:
        if cluster.running():
            with contextlib.suppress(Exception):
                _signal_all(_pg_pids(cluster), signal.SIGCONT)
                await cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.asynccontextmanager
async def _stack_over(cluster: Cluster) -> AsyncIterator[Stack]:
    config = SidecarConfig(postgres_dsn=cluster.dsn, namespace="h" + uuid.uuid4().hex[:8])
    stack, stop = await start_stack(config)
    try:
        yield stack
    finally:
        if cluster.running():
            _signal_all(_pg_pids(cluster), signal.SIGCONT)
        await stop()


@pytest.mark.timeout(90)
async def test_a_hung_postgres_opens_its_circuit_though_every_client_gives_up_first(
    postgres_stack: tuple[Stack, Cluster],
) -> None:
    stack, c = postgres_stack
    pids = _pg_pids(c)
    try:
        await hang_and_load(stack, "postgres", lambda: _signal_all(pids, signal.SIGSTOP))
    finally:
        _signal_all(pids, signal.SIGCONT)


@pytest.mark.timeout(90)
async def test_a_killed_postgres_opens_its_circuit_though_every_client_gives_up_first(
    postgres_stack: tuple[Stack, Cluster],
) -> None:
    """Killed: new connections are refused, but the pool waits out its own timeout for one."""
    stack, c = postgres_stack
    pids = _pg_pids(c)
    await hang_and_load(stack, "postgres", lambda: _signal_all(pids, signal.SIGKILL))


@pytest.mark.timeout(60)
async def test_a_hung_redis_opens_its_circuit_though_every_client_gives_up_first(
    short_tmp: Path,
) -> None:
    port = free_port()
    proc = start_redis(port, short_tmp)
    try:
        config = SidecarConfig(
            redis_url=f"redis://127.0.0.1:{port}/0", namespace="h" + uuid.uuid4().hex[:8]
        )
        stack, stop = await start_stack(config)
        try:
            await hang_and_load(stack, "redis", lambda: proc.send_signal(signal.SIGSTOP))
        finally:
            proc.send_signal(signal.SIGCONT)
            await stop()
    finally:
        proc.kill()
        proc.wait(5)

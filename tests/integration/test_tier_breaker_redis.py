"""The circuit breaker around a real `RedisTier`: a private `redis-server` is killed (the
tier then fails fast) and restarted on the same port (one probe later, it serves again)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from functools import partial
from pathlib import Path

import pytest

from sidecar.core.clock import SystemClock
from sidecar.core.errors import TierError
from sidecar.core.observer import RecordingObserver
from sidecar.tiers.base import SetStatus
from sidecar.tiers.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreakerTier
from sidecar.tiers.redis import RedisTier
from tests.integration.servers import start_redis
from tests.support import entries
from tools.stack import free_port

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"
THRESHOLD = 3
OPEN_FOR_S = 0.3


entry = partial(entries.entry, body=b"v", headers=())


@pytest.mark.timeout(10)
async def test_killed_server_fails_fast_and_restarted_server_is_used_after_one_probe(
    short_tmp: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    processes.append(start_redis(port, short_tmp))
    obs = RecordingObserver()
    clock = SystemClock()
    redis_tier = RedisTier(f"redis://{HOST}:{port}/0", clock, timeout_s=0.2)
    tier = CircuitBreakerTier(
        redis_tier, clock, failure_threshold=THRESHOLD, open_for_s=OPEN_FOR_S, observer=obs
    )
    try:
        await tier.open()
        assert await tier.set(b"k", entry()) is SetStatus.STORED
        assert await tier.get(b"k") is not None

        processes[0].kill()  # SIGKILL
        processes[0].wait(5)
        for _ in range(THRESHOLD):
            with pytest.raises(TierError, match="redis get failed"):
                await tier.get(b"k")
        assert tier.state == OPEN
        for _ in range(20):
            t0 = time.perf_counter()
            with pytest.raises(TierError, match=r"^redis: circuit open$"):
                await tier.get(b"k")
            assert time.perf_counter() - t0 < 0.01

        processes.append(start_redis(port, short_tmp))  # same port, empty
        seen = len(obs.events)
        restarted = time.monotonic()
        while True:
            try:
                assert await tier.get(b"k") is None
                break
            except TierError as exc:
                assert str(exc) == "redis: circuit open"
                assert time.monotonic() - restarted < 1.0
                await asyncio.sleep(0.01)
        assert time.monotonic() - restarted < 1.0
        # one probe after the restart: it succeeded and closed the circuit
        moves = [e for e in obs.events[seen:] if e[0] == "circuit"]
        assert moves == [("circuit", "redis", HALF_OPEN), ("circuit", "redis", CLOSED)]
        assert {e for e in obs.events[seen:] if e[0] != "circuit"} <= {
            ("tier_skipped", "redis", "circuit_open")
        }
        assert await tier.set(b"k", entry()) is SetStatus.STORED
        assert await tier.get(b"k") is not None
    finally:
        await tier.close()

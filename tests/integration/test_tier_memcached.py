"""The Memcached tier against real servers: odd keys, collisions, size, corruption, and
servers that stop, hang, come back or share the keys.

Most tests use the shared server of `make services-up`, each under its own namespace; those
that kill or pause a server start their own ``memcached`` on a free port.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from typing import Any

import pytest
from pymemcache.client.base import Client

from sidecar.core.clock import ManualClock, SystemClock
from sidecar.core.errors import TierError
from sidecar.core.observer import RecordingObserver
from sidecar.tiers.base import SetStatus
from sidecar.tiers.memcached import MemcachedTier, pack_value, parse_servers
from sidecar.tiers.memcached_pool import server_id
from tests.support import entries
from tools import services
from tools.stack import free_port

pytestmark = pytest.mark.integration

DAY_MS = 24 * 3600 * 1000


entry = partial(entries.entry, headers=((b"content-type", b"text/plain"),))


def unique() -> str:
    return "t" + uuid.uuid4().hex[:12]


def shared_servers() -> list[tuple[str, int]]:
    text = services.load_env().get("STRATA_TEST_MEMCACHED_SERVERS")
    if not text:
        pytest.fail("STRATA_TEST_MEMCACHED_SERVERS missing: run `make services-up` first")
    return parse_servers(text)


@pytest.fixture
def obs() -> RecordingObserver:
    return RecordingObserver()


@pytest.fixture
async def tier(obs: RecordingObserver) -> AsyncIterator[MemcachedTier]:
    t = MemcachedTier(
        shared_servers(), SystemClock(), namespace=unique(), timeout_s=0.5, observer=obs
    )
    await t.open()
    try:
        yield t
    finally:
        await t.close()


@pytest.fixture
def raw() -> Iterator[Client]:
    """A plain pymemcache client on the shared server, to look behind the tier's back."""
    client = Client(shared_servers()[0], default_noreply=False, timeout=1, connect_timeout=1)
    try:
        yield client
    finally:
        client.close()


class Memcached:
    """One memcached process of our own, on a fixed port it keeps across restarts."""

    def __init__(self, *extra: str) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra = extra  # more memcached options

    @property
    def server(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def start(self) -> None:
        args = ["memcached", "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "64"]
        args += self.extra  # a later -m wins
        if os.geteuid() == 0:
            args += ["-u", "nobody"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 3.0
        while True:
            try:
                socket.create_connection(self.server, timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGCONT)  # in case it was paused
                self.proc.kill()
            self.proc.wait()
            self.proc = None

    def pause(self, paused: bool) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP if paused else signal.SIGCONT)


@pytest.fixture
def memcached() -> Iterator[Callable[..., Memcached]]:
    """Starts memcached processes on demand (arguments: more memcached options); kills
    every one at the end."""
    if shutil.which("memcached") is None:
        pytest.skip("no memcached binary on PATH")
    started: list[Memcached] = []

    def start(*extra: str) -> Memcached:
        m = Memcached(*extra)
        m.start()
        started.append(m)
        return m

    yield start
    for m in started:
        m.kill()


async def elapsed(coro: Any) -> tuple[float, BaseException | None]:
    """How long `coro` took and what it raised."""
    t0 = time.monotonic()
    try:
        await coro
    except Exception as exc:
        return time.monotonic() - t0, exc
    return time.monotonic() - t0, None


# -- keys and values -------------------------------------------------------------------


async def test_long_spaced_and_control_keys_work(tier: MemcachedTier) -> None:
    keys = [b"k" * 300, b"a key with spaces", b"ctl\x00\x01\r\n\x7f", b"\xff" * 251, b""]
    for i, k in enumerate(keys):
        assert await tier.set(k, entry(body=str(i).encode())) is SetStatus.STORED
    for i, k in enumerate(keys):
        got = await tier.get(k)
        assert got is not None and got.body == str(i).encode(), k
        assert len(tier.storage_key(k)) <= 250 and b" " not in tier.storage_key(k)


async def test_another_keys_value_under_our_name_is_a_miss(
    tier: MemcachedTier, raw: Client, obs: RecordingObserver
) -> None:
    """A SHA-256 collision, simulated: key b's stored value copied under key a's name."""
    await tier.set(b"b", entry(body=b"entry of b"))
    raw.set(tier.storage_key(b"a"), raw.get(tier.storage_key(b"b")))
    assert await tier.get(b"a") is None
    assert raw.get(tier.storage_key(b"a")) is None  # purged
    assert ("evicted", "memcached", "corrupt", 1) in obs.events
    got = await tier.get(b"b")
    assert got is not None and got.body == b"entry of b"


@pytest.mark.parametrize(
    "value",
    [b"garbage", b"\x00\x00\x00\x01kS1", b"\x00\x00\x00\x01k" + b"S1\x01\x00\xff\xff\xff\xff"],
    ids=["foreign", "right-key-truncated-entry", "right-key-bad-meta"],
)
async def test_corrupt_value_is_a_miss_purged_and_counted(
    tier: MemcachedTier, raw: Client, obs: RecordingObserver, value: bytes
) -> None:
    raw.set(tier.storage_key(b"k"), value)
    assert await tier.get(b"k") is None
    assert raw.get(tier.storage_key(b"k")) is None
    assert obs.events == [("evicted", "memcached", "corrupt", 1)]
    assert tier.snapshot().evictions == 1 and tier.snapshot().misses == 1


async def test_too_large_is_refused_never_sent_and_drops_the_old_value(
    tier: MemcachedTier, raw: Client
) -> None:
    small = MemcachedTier(shared_servers(), SystemClock(), namespace=unique(), max_item_bytes=2000)
    try:
        assert await small.set(b"k", entry(body=b"x" * 100)) is SetStatus.STORED
        big = entry(body=os.urandom(3000))  # random: zstd cannot shrink it
        assert await small.set(b"k", big) is SetStatus.TOO_LARGE
        assert raw.get(small.storage_key(b"k")) is None
        assert await small.set(b"fresh", big) is SetStatus.TOO_LARGE
        assert raw.get(small.storage_key(b"fresh")) is None
        assert small.snapshot().admission_rejections == 2
    finally:
        await small.close()
    # the default limit fits Memcached's default 1 MiB items exactly, with room for its header
    overhead = len(pack_value(b"k", entry(body=os.urandom(900_000)))) - 900_000
    at_limit = entry(body=os.urandom(1024 * 1024 - 512 - overhead))
    assert len(pack_value(b"k", at_limit)) == 1024 * 1024 - 512
    assert await tier.set(b"k", at_limit) is SetStatus.STORED
    assert await tier.get(b"k") == at_limit
    over = entry(body=os.urandom(1024 * 1024 - 512 - overhead + 1))
    assert await tier.set(b"k", over) is SetStatus.TOO_LARGE
    assert await tier.get(b"k") is None


async def test_expiry_follows_the_tier_clock_and_long_lifetimes_are_absolute(
    raw: Client,
) -> None:
    clock = ManualClock(SystemClock().now_ms())
    t = MemcachedTier(shared_servers(), clock, namespace=unique())
    try:
        assert await t.set(b"old", entry(ttl_ms=0, stored_at_ms=clock.now_ms())) is (
            SetStatus.NOT_ADMITTED
        )
        assert raw.get(t.storage_key(b"old")) is None
        await t.set(b"soon", entry(ttl_ms=5000, stored_at_ms=clock.now_ms()))
        await t.set(b"40d", entry(ttl_ms=40 * DAY_MS, stored_at_ms=clock.now_ms()))
        assert await t.get(b"soon") is not None
        clock.advance(5000)  # Memcached still holds it (real time), the tier must not serve it
        assert raw.get(t.storage_key(b"soon")) is not None
        assert await t.get(b"soon") is None
        assert await t.get(b"40d") is not None  # sent as an absolute time, not "40 days ago"
    finally:
        await t.close()


# -- servers that go away --------------------------------------------------------------


async def test_server_that_disappears_and_comes_back(memcached: Callable[[], Memcached]) -> None:
    m = memcached()
    t = MemcachedTier([m.server], SystemClock(), timeout_s=0.2, dead_retry_s=0.3)
    try:
        await t.open()
        await asyncio.gather(*(t.set(f"k{i}".encode(), entry()) for i in range(8)))  # pool > 1
        assert await t.get(b"k0") is not None

        m.kill()
        took, err = await elapsed(t.get(b"k0"))
        assert isinstance(err, TierError) and took < 0.5
        took, err = await elapsed(t.set(b"k0", entry()))  # marked down: no new attempt
        assert isinstance(err, TierError) and took < 0.05

        m.start()  # same port
        await asyncio.sleep(0.35)
        assert await t.get(b"k0") is None  # a restarted memcached is empty
        assert await t.set(b"k0", entry(body=b"again")) is SetStatus.STORED
        got = await t.get(b"k0")
        assert got is not None and got.body == b"again"

        # restarted between two calls: the pooled connections are dead, the server is not
        await asyncio.gather(*(t.get(f"k{i}".encode()) for i in range(8)))
        m.kill()
        m.start()
        assert await t.get(b"k0") is None  # no TierError: closed connections are skipped
        assert await t.set(b"k0", entry()) is SetStatus.STORED
    finally:
        await t.close()


async def test_hung_server_costs_two_timeouts(memcached: Callable[[], Memcached]) -> None:
    """Two failures in a row mark it down (one could be a slow moment: see
    test_tier_memcached_load.py); then calls fail fast until `dead_retry_s` has passed."""
    m = memcached()
    t = MemcachedTier([m.server], SystemClock(), timeout_s=0.2, dead_retry_s=0.3)
    try:
        await t.set(b"k", entry())
        m.pause(True)
        await asyncio.sleep(0.05)  # stopped for sure before the next request reaches it
        for _ in range(2):
            took, err = await elapsed(t.get(b"k"))
            assert isinstance(err, TierError) and 0.15 < took < 0.5
        took, err = await elapsed(t.get(b"k"))
        assert isinstance(err, TierError) and took < 0.05
        m.pause(False)
        await asyncio.sleep(0.35)
        assert await t.get(b"k") is not None
    finally:
        await t.close()


async def test_open_fails_only_when_no_server_answers(
    memcached: Callable[[], Memcached],
) -> None:
    m = memcached()
    dead = ("127.0.0.1", free_port())
    t = MemcachedTier([dead], SystemClock(), timeout_s=0.2, dead_retry_s=0.2)
    both = MemcachedTier([m.server, dead], SystemClock(), timeout_s=0.2)
    try:
        with pytest.raises(TierError, match="no memcached server answered"):
            await t.open()
        await both.open()  # one of two is enough
        keys = [f"k{i}".encode() for i in range(40)]
        live = [k for k in keys if both.server_for(k) == server_id(m.server)]
        gone = [k for k in keys if both.server_for(k) == server_id(dead)]
        assert live and gone
        assert await both.set(live[0], entry()) is SetStatus.STORED
        with pytest.raises(TierError):
            await both.set(gone[0], entry())
    finally:
        await t.close()
        await both.close()
    with pytest.raises(TierError, match="closed"):
        await both.get(b"k")


async def test_keys_spread_over_two_servers(memcached: Callable[[], Memcached]) -> None:
    a, b = memcached(), memcached()
    t = MemcachedTier([a.server, b.server], SystemClock(), namespace="spread")
    clients = {server_id(s): Client(s, default_noreply=False) for s in (a.server, b.server)}
    try:
        await t.open()
        keys = [f"v1:r:{i}".encode() for i in range(200)]
        for k in keys:
            assert await t.set(k, entry(body=k)) is SetStatus.STORED
        per_server = dict.fromkeys(clients, 0)
        for k in keys:
            owner = t.server_for(k)
            per_server[owner] += 1
            for sid, c in clients.items():
                assert (c.get(t.storage_key(k)) is not None) is (sid == owner)
            got = await t.get(k)
            assert got is not None and got.body == k
        assert all(60 <= n <= 140 for n in per_server.values()), per_server
    finally:
        await t.close()
        for c in clients.values():
            c.close()

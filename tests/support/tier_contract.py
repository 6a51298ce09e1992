"""One contract, every tier: the same behaviour from memory, Redis, Memcached, PostgreSQL
and from every fake that tests use as a tier.

`CASES` is the one table of what the contract runs against. Cases that need the servers of
`make services-up` carry the `integration` mark and are collected by
tests/integration/test_tier_contract.py; the others (the memory tier and the fakes of
tests/support/fakes.py) by tests/unit/sidecar/tiers/test_tier_contract.py, so a unit run
checks them without servers. Each collecting module subclasses `TierContract` and names
its cases.

The contract has three parts (`STORAGE`, `EXPIRY`, `DOWN`). A case may be exempt from a
part; its `exempt` mapping says why, and the part's tests are not generated for it. What a
tier cannot do (prefix or tag deletes on Memcached) is not an exemption: it is declared in
the tier's `capabilities` and checked as declared.

Remote tiers get a fresh namespace per test, so runs and tests never see each other's keys.
Local cases run on a `ManualClock` (passing time is advancing it); remote ones on the
system clock (passing time is waiting, since their servers expire keys themselves).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import pytest

from sidecar.core.clock import Clock, ManualClock, SystemClock
from sidecar.core.errors import TierError
from sidecar.tiers.base import MEASURABLE, SetStatus, Tier
from sidecar.tiers.memory import MemoryTier
from tests.support.entries import entry
from tests.support.fakes import CorruptingMemory, DictTier, FakeTier

#: Parts of the contract a case can be exempt from.
STORAGE = "storage"  # what is set is got back whole until deleted, replaced or purged
EXPIRY = "expiry"  # an entry past its expiry is never returned
DOWN = "down"  # a tier that cannot answer raises TierError quickly, never hangs

#: How long a tier that cannot answer may take to say so, whatever the machine's load.
DOWN_WITHIN_S = 5.0

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class TierCase:
    """A tier the contract runs against.

    `make(clock, namespace)` returns the tier, opened; `make_down(clock)` one that cannot
    answer (its server unreachable, or a fake told to fail). `exempt` maps a part of the
    contract to the reason this tier is not held to it."""

    id: str
    make: Callable[[Clock, str], Awaitable[Tier]]
    make_down: Callable[[Clock], Awaitable[Tier]] | None = None
    needs_servers: bool = False
    exempt: Mapping[str, str] = field(default_factory=dict)

    def param(self) -> Any:
        marks = [pytest.mark.integration] if self.needs_servers else []
        return pytest.param(self, id=self.id, marks=marks)


def part(name: str) -> Callable[[F], F]:
    """Marks a contract test as belonging to part `name`."""

    def mark(test: F) -> F:
        test.contract_part = name  # type: ignore[attr-defined]
        return test

    return mark


async def pass_time(clock: Clock, ms: int) -> None:
    """Let `ms` pass for the tier: advance a manual clock, or wait for real."""
    if isinstance(clock, ManualClock):
        clock.advance(ms)
    else:
        await asyncio.sleep(ms / 1000)


class TierContract:
    """The contract's tests; a subclass named `Test...` sets `cases` and collects them."""

    cases: ClassVar[Sequence[TierCase]] = ()

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        name = getattr(metafunc.function, "contract_part", None)
        if name is not None:
            held = [c.param() for c in self.cases if name not in c.exempt]
            metafunc.parametrize("case", held)

    @pytest.fixture
    def tier_clock(self, case: TierCase) -> Clock:
        return SystemClock() if case.needs_servers else ManualClock()

    @pytest.fixture
    async def tier(self, case: TierCase, tier_clock: Clock) -> AsyncIterator[Tier]:
        t = await case.make(tier_clock, "t" + uuid.uuid4().hex[:12])
        try:
            yield t
        finally:
            await t.close()

    @part(STORAGE)
    async def test_get_set_replace_delete(self, tier: Tier, tier_clock: Clock) -> None:
        assert await tier.get(b"k") is None
        e = entry(tier_clock, tags=("t1",), vary=("accept",), stale_if_error_ms=5000)
        assert await tier.set(b"k", e) is SetStatus.STORED
        assert await tier.get(b"k") == e
        e2 = entry(tier_clock, body=b"second")
        await tier.set(b"k", e2)
        assert await tier.get(b"k") == e2
        assert await tier.delete(b"k") is True
        assert await tier.get(b"k") is None
        assert await tier.delete(b"k") is False

    @part(STORAGE)
    @pytest.mark.parametrize(
        "body",
        [b"", bytes(range(256)) * 8, b"\x00" * 10, os.urandom(700 * 1024)],
        ids=["empty", "all-bytes", "nuls", "700KiB-random"],
    )
    async def test_bodies_round_trip_exactly(
        self, tier: Tier, tier_clock: Clock, body: bytes
    ) -> None:
        e = entry(tier_clock, body=body)
        assert await tier.set(b"body", e) is SetStatus.STORED
        got = await tier.get(b"body")
        assert got is not None and got.body == body

    @part(STORAGE)
    async def test_keys_are_binary_safe_and_distinct(self, tier: Tier, tier_clock: Clock) -> None:
        keys = [b"v1:r:a", b"v1:r:a ", b"v1:r:\xc3\xa9", b"v1:r:a\x1fv00:11", b"x" * 1500]
        for i, k in enumerate(keys):
            await tier.set(k, entry(tier_clock, body=str(i).encode()))
        for i, k in enumerate(keys):
            got = await tier.get(k)
            assert got is not None and got.body == str(i).encode(), k

    @part(EXPIRY)
    async def test_expired_entries_are_never_returned(self, tier: Tier, tier_clock: Clock) -> None:
        e = entry(tier_clock, ttl_ms=1000)  # expires_at = stored_at + 1 s
        await tier.set(b"short", e)
        await tier.set(b"long", entry(tier_clock, ttl_ms=60_000))
        assert await tier.get(b"short") == e
        await pass_time(tier_clock, 2100)  # Memcached's expiry has 1 s granularity
        assert await tier.get(b"short") is None
        assert await tier.get(b"long") is not None
        await tier.sweep()  # never drops live entries
        assert await tier.get(b"long") is not None

    @part(STORAGE)
    async def test_delete_by_tag(self, tier: Tier, tier_clock: Clock) -> None:
        if "tag_delete" not in tier.capabilities:
            assert await tier.delete_tag("t") == 0
            return
        await tier.set(b"a", entry(tier_clock, tags=("users", "u1")))
        await tier.set(b"b", entry(tier_clock, tags=("users",)))
        await tier.set(b"c", entry(tier_clock, tags=("orders",)))
        assert await tier.delete_tag("users") == 2
        assert await tier.get(b"a") is None and await tier.get(b"b") is None
        assert await tier.get(b"c") is not None
        assert await tier.delete_tag("users") == 0
        # replacing an entry moves it from its old tags to its new ones
        await tier.set(b"c", entry(tier_clock, tags=("new",)))
        assert await tier.delete_tag("orders") == 0
        assert await tier.delete_tag("new") == 1

    @part(STORAGE)
    async def test_delete_by_prefix(self, tier: Tier, tier_clock: Clock) -> None:
        if "prefix_delete" not in tier.capabilities:
            assert await tier.delete_prefix(b"v1:") == 0
            return
        await tier.set(b"v1:routeA:1", entry(tier_clock))
        await tier.set(b"v1:routeA:2", entry(tier_clock))
        await tier.set(b"v1:routeB:1", entry(tier_clock))
        await tier.set(b"v1:routeA%:x", entry(tier_clock))  # LIKE / glob metacharacters
        assert await tier.delete_prefix(b"v1:routeA:") == 2
        assert await tier.get(b"v1:routeB:1") is not None
        assert await tier.get(b"v1:routeA%:x") is not None

    @part(STORAGE)
    async def test_concurrent_writers_leave_one_whole_value(
        self, tier: Tier, tier_clock: Clock
    ) -> None:
        bodies = [f"writer-{i}".encode() * 100 for i in range(20)]
        await asyncio.gather(*(tier.set(b"race", entry(tier_clock, body=b)) for b in bodies))
        got = await tier.get(b"race")
        assert got is not None and got.body in bodies

    @part(STORAGE)
    async def test_snapshot_names_the_tier(self, tier: Tier, tier_clock: Clock) -> None:
        await tier.set(b"k", entry(tier_clock))
        snap = tier.snapshot()
        assert snap.name == tier.name
        if tier.name == "memory":  # the shared tiers cannot count without asking their server
            assert snap.entries == 1 and snap.bytes > 0

    @part(STORAGE)
    async def test_usage_is_measured_only_where_declared(
        self, tier: Tier, tier_clock: Clock
    ) -> None:
        await tier.set(b"k", entry(tier_clock))
        used = await tier.usage()
        if MEASURABLE in tier.capabilities:
            assert used is not None and used >= 0
        else:
            assert used is None

    @part(DOWN)
    async def test_a_tier_that_cannot_answer_raises_tier_error_quickly(
        self, case: TierCase
    ) -> None:
        """A tier whose server is gone answers TierError within its timeout, never hangs or
        leaks another exception type (the engine then skips it)."""
        assert case.make_down is not None, f"{case.id}: no way to make it unreachable"
        clock = SystemClock()
        tier = await case.make_down(clock)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with contextlib.suppress(TierError):  # opening may already say so; operations must too
            await tier.open()
        for op in (tier.get(b"k"), tier.set(b"k", entry(clock)), tier.delete(b"k")):
            with pytest.raises(TierError):
                await op
        assert loop.time() - t0 < DOWN_WITHIN_S
        await tier.close()


# -- the cases ----------------------------------------------------------------------------


def _service(key: str) -> str:
    from tests.integration.servers import service  # noqa: PLC0415 (only cases with servers)

    return service(key)


def _nothing_listens() -> int:
    from tools.stack import free_port  # noqa: PLC0415

    return free_port()  # nothing listens here


async def _opened(tier: Tier) -> Tier:
    await tier.open()
    return tier


async def _memory(clock: Clock, namespace: str) -> Tier:
    return await _opened(MemoryTier(64 * 1024 * 1024, clock, admission="always"))


async def _corrupting_memory(clock: Clock, namespace: str) -> Tier:
    return await _opened(CorruptingMemory(clock))


async def _dict(clock: Clock, namespace: str) -> Tier:
    return await _opened(DictTier("dict", clock))


async def _dict_down(clock: Clock) -> Tier:
    tier = DictTier("dict", clock)
    tier.broken = True
    return tier


async def _fake(clock: Clock, namespace: str) -> Tier:
    return await _opened(FakeTier())


async def _fake_down(clock: Clock) -> Tier:
    tier = FakeTier()
    tier.fail = True
    return tier


async def _redis(clock: Clock, namespace: str) -> Tier:
    from sidecar.tiers.redis import RedisTier  # noqa: PLC0415

    url = _service("STRATA_TEST_REDIS_URL")
    return await _opened(RedisTier(url, clock, namespace=namespace))


async def _redis_down(clock: Clock) -> Tier:
    from sidecar.tiers.redis import RedisTier  # noqa: PLC0415

    return RedisTier(f"redis://127.0.0.1:{_nothing_listens()}/0", clock, timeout_s=0.2)


async def _memcached(clock: Clock, namespace: str) -> Tier:
    from sidecar.tiers.memcached import MemcachedTier, parse_servers  # noqa: PLC0415

    servers = parse_servers(_service("STRATA_TEST_MEMCACHED_SERVERS"))
    return await _opened(MemcachedTier(servers, clock, namespace=namespace))


async def _memcached_down(clock: Clock) -> Tier:
    from sidecar.tiers.memcached import MemcachedTier  # noqa: PLC0415

    return MemcachedTier([("127.0.0.1", _nothing_listens())], clock, timeout_s=0.2)


async def _postgres(clock: Clock, namespace: str) -> Tier:
    from sidecar.tiers.postgres import PostgresTier  # noqa: PLC0415

    dsn = _service("STRATA_TEST_POSTGRES_DSN")
    return await _opened(PostgresTier(dsn, clock, namespace=namespace))


async def _postgres_down(clock: Clock) -> Tier:
    from sidecar.tiers.postgres import PostgresTier  # noqa: PLC0415

    dsn = f"postgresql://postgres@127.0.0.1:{_nothing_listens()}/strata"
    return PostgresTier(dsn, clock, timeout_s=0.2)


_NO_IO = "it does no I/O: nothing it calls can fail, so it never raises TierError"

CASES: tuple[TierCase, ...] = (
    TierCase("memory", _memory, exempt={DOWN: _NO_IO}),
    TierCase("corrupting-memory", _corrupting_memory, exempt={DOWN: _NO_IO}),
    TierCase("dict", _dict, _dict_down),
    TierCase(
        "fake",
        _fake,
        _fake_down,
        exempt={
            STORAGE: "it stores nothing by design (every get is a miss): it stands for a "
            "tier whose calls are counted, slowed or failed behind the breaker",
            EXPIRY: "it stores nothing, so nothing can expire",
        },
    ),
    TierCase("redis", _redis, _redis_down, needs_servers=True),
    TierCase("memcached", _memcached, _memcached_down, needs_servers=True),
    TierCase("postgres", _postgres, _postgres_down, needs_servers=True),
)
LOCAL_CASES = tuple(c for c in CASES if not c.needs_servers)
SERVER_CASES = tuple(c for c in CASES if c.needs_servers)

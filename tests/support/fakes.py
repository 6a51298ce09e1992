"""Fake tiers shared by several test modules. Each is checked by the tier contract
(tests/support/tier_contract.py) as far as it claims to be a tier; where a fake is exempt
from part of the contract, the contract's table of cases says which part and why.

What these fakes do NOT do: evict, count bytes, or talk to anything; `DictTier.sweep` drops
nothing (expired entries are hidden on read instead).
"""

from __future__ import annotations

import asyncio

from sidecar.core.clock import Clock
from sidecar.core.errors import TierError
from sidecar.core.model import CachedResponse, TierSnapshot
from sidecar.tiers.base import PREFIX_DELETE, TAG_DELETE, SetStatus
from sidecar.tiers.codec import CorruptEntryError
from sidecar.tiers.memory import MemoryTier


class DictTier:
    """A fake tier: a dict, optionally broken, counting its reads."""

    def __init__(
        self,
        name: str,
        clock: Clock,
        delay: float = 0.0,
        capabilities: frozenset[str] = frozenset({PREFIX_DELETE, TAG_DELETE}),
    ) -> None:
        self._name = name
        self._capabilities = capabilities
        self.clock = clock
        self.data: dict[bytes, CachedResponse] = {}
        self.broken = False
        self.gets = 0
        self.delay = delay

    @property
    def name(self) -> str:
        return self._name

    @property
    def capabilities(self) -> frozenset[str]:
        return self._capabilities

    async def open(self) -> None:
        pass

    def _check(self) -> None:
        if self.broken:
            raise TierError(f"{self._name} is down")

    async def get(self, key: bytes) -> CachedResponse | None:
        self._check()
        self.gets += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        e = self.data.get(key)
        if e is not None and e.expires_at_ms <= self.clock.now_ms():
            return None
        return e

    async def set(self, key: bytes, entry: CachedResponse) -> SetStatus:
        self._check()
        self.data[key] = entry
        return SetStatus.STORED

    async def delete(self, key: bytes) -> bool:
        self._check()
        return self.data.pop(key, None) is not None

    async def delete_prefix(self, prefix: bytes) -> int:
        self._check()
        if PREFIX_DELETE not in self._capabilities:  # the contract: answer 0, drop nothing
            return 0
        victims = [k for k in self.data if k.startswith(prefix)]
        for k in victims:
            del self.data[k]
        return len(victims)

    async def delete_tag(self, tag: str) -> int:
        self._check()
        if TAG_DELETE not in self._capabilities:
            return 0
        victims = [k for k, e in self.data.items() if tag in e.tags]
        for k in victims:
            del self.data[k]
        return len(victims)

    async def sweep(self) -> int:
        return 0

    async def usage(self) -> int | None:
        return None  # not MEASURABLE

    def snapshot(self) -> TierSnapshot:
        return TierSnapshot(self._name, len(self.data), 0, 0)

    async def close(self) -> None:
        self.data.clear()


class FakeTier:
    """Fails on demand, counts calls, can be slow; `fail` and `delay` are read when a call
    starts, so a slow call keeps the outcome it started with. It stores nothing: every get
    is a miss."""

    def __init__(self) -> None:
        self.fail = False
        self.delay = 0.0
        self.calls = 0
        self.closed = 0

    @property
    def name(self) -> str:
        return "fake"

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset({PREFIX_DELETE})

    async def _go(self) -> None:
        self.calls += 1
        fail, delay = self.fail, self.delay
        if delay:
            await asyncio.sleep(delay)
        if fail:
            raise TierError("fake is down")

    async def open(self) -> None:
        await self._go()

    async def get(self, key: bytes) -> CachedResponse | None:
        await self._go()
        return None

    async def set(self, key: bytes, entry: CachedResponse) -> SetStatus:
        await self._go()
        return SetStatus.STORED

    async def delete(self, key: bytes) -> bool:
        await self._go()
        return False

    async def delete_prefix(self, prefix: bytes) -> int:
        await self._go()
        return 0

    async def delete_tag(self, tag: str) -> int:
        await self._go()
        return 0

    async def sweep(self) -> int:
        await self._go()
        return 0

    async def usage(self) -> int | None:
        return None  # not MEASURABLE

    def snapshot(self) -> TierSnapshot:
        return TierSnapshot(name="fake", entries=7, bytes=70, max_bytes=700)

    async def close(self) -> None:
        self.closed += 1


class CorruptingMemory(MemoryTier):
    """The memory tier, raising `CorruptEntryError` for the keys in `corrupt` as the real
    one does when a stored body cannot be decompressed."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(1 << 20, clock)
        self.corrupt: set[bytes] = set()

    async def get(self, key: bytes) -> CachedResponse | None:
        if key in self.corrupt and key in self:
            raise CorruptEntryError("unreadable body: test")
        return await super().get(key)

    async def delete(self, key: bytes) -> bool:
        self.corrupt.discard(key)
        return await super().delete(key)

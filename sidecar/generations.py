"""Generation counters per tag: purging a tag is one increment, not a walk over its keys.

Every tag has a counter (absent = 0). A stored entry is stamped with the counters of its
tags at store time (`CachedResponse.tag_generations`); a lookup compares the stamp with the
current counters and treats the entry as purged (a miss, deleted lazily) when any counter
has moved past it. Purging a tag is `bump(tag)`: O(1) whatever the number of entries.

`LocalGenerations` keeps the counters in this process (one node; the default).
`RedisGenerations` shares them through Redis as ``{namespace}:g:<tag>`` (INCR on `bump`,
one MGET for all the tags of an entry on `current`), with a local cache of the values read
for `cache_ms`, so a hot set of tags costs one MGET per `cache_ms` per sidecar, not one per
lookup (an entry without tags costs nothing). A `bump` made here updates the local cache at
once: a purge is immediate on the node that made it; other sidecars see it within
`cache_ms` (their cached value expires, the next lookup reads the new counter).

Fail open: a Redis error (refused, timeout, pool exhausted, cluster error) is reported as
``tier_error("redis_generations", op)``, logged at most once per second, and the call is
answered from node-local counters instead (for `RETRY_AFTER_S` after an error Redis is not
asked again). During an outage a purge therefore still applies on the node that made it
(its local counter moves past every stamp it knows), but other sidecars keep serving the
purged entries from their own caches until those expire or Redis answers again; a purge
made during the outage is not replayed to Redis afterwards (entries stored elsewhere
before it may be served again once this node reads Redis's lower counter), so purge again
after an outage if it matters. Only `open` and `close` raise (`TierError`).

What is NOT guaranteed: counters surviving a Redis FLUSH, failover data loss or eviction
(a counter that goes back to a lower value makes older entries stamped with the higher
value look current again only if the counter later climbs past them; entries are never
resurrected by a lower counter because the check is "current > stamped"), nor that entries
are removed from remote tiers at purge time (they are removed when next read, or expire).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from sidecar.clock import Clock
from sidecar.errors import TierError
from sidecar.observability.observer import NullObserver, Observer
from sidecar.outage import Outage
from sidecar.redis_conn import DRIVER_ERRORS, connect

log = logging.getLogger("strata.sidecar.generations")

#: After a Redis error, counters stay node-local for this long before Redis is tried again.
RETRY_AFTER_S = 1.0
#: At most one log line per this many seconds about failing Redis generations.
LOG_EVERY_S = 1.0
OBSERVER_TIER = "redis_generations"
MAX_CONNECTIONS = 32


class Generations(Protocol):
    """Per-tag purge counters."""

    async def current(self, tags: Sequence[str]) -> tuple[int, ...]:
        """The counter of each tag, in order (0 for a tag never bumped)."""
        ...

    async def bump(self, tag: str) -> int:
        """Increment the counter of `tag`; its new value."""
        ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...


class LocalGenerations:
    """Counters in a dict: purges reach this process only."""

    def __init__(self) -> None:
        self._counters: dict[str, int] = {}

    async def current(self, tags: Sequence[str]) -> tuple[int, ...]:
        counters = self._counters
        return tuple(counters.get(t, 0) for t in tags)

    async def bump(self, tag: str) -> int:
        value = self._counters.get(tag, 0) + 1
        self._counters[tag] = value
        return value

    def get(self, tag: str) -> int:
        return self._counters.get(tag, 0)

    def set_at_least(self, tag: str, value: int) -> None:
        if self._counters.get(tag, 0) < value:
            self._counters[tag] = value

    async def open(self) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        """Nothing to release."""


class RedisGenerations:
    """Counters shared through Redis, cached locally for `cache_ms`. See the module doc."""

    def __init__(
        self,
        url: str,
        clock: Clock,
        *,
        namespace: str = "strata",
        timeout_s: float = 0.05,
        cache_ms: int = 1000,
        observer: Observer | None = None,
    ) -> None:
        if timeout_s <= 0 or cache_ms < 0:
            raise ValueError("timeout_s must be positive and cache_ms not negative")
        self._clock = clock
        self._observer = observer or NullObserver()
        self._prefix = namespace + ":g:"
        self._cache_s = cache_ms / 1000.0
        self._cache: dict[str, tuple[int, float]] = {}  # tag -> (value, valid until)
        self._local = LocalGenerations()
        self._outage = Outage(
            self._clock,
            self._observer,
            label=OBSERVER_TIER,
            what="redis generations",
            consequence="purges are node-local until redis answers",
            action="generations_redis_error",
            logger=log,
            retry_after_s=RETRY_AFTER_S,
            log_every_s=LOG_EVERY_S,
        )
        self._client = connect(url, timeout_s, MAX_CONNECTIONS)

    async def open(self) -> None:
        """PING once; `TierError` if unreachable (counters are local until Redis answers)."""
        try:
            await self._client.ping()
        except DRIVER_ERRORS as exc:
            raise self._failed("open", exc) from exc

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except DRIVER_ERRORS as exc:
            raise self._failed("close", exc) from exc

    async def current(self, tags: Sequence[str]) -> tuple[int, ...]:
        """Cached values where fresh; one MGET for the rest; local counters on error."""
        if not tags:
            return ()
        now = self._clock.monotonic()
        cache = self._cache
        values: list[int] = []
        missing: list[str] = []
        for tag in tags:
            hit = cache.get(tag)
            if hit is not None and hit[1] > now:
                values.append(hit[0])
            else:
                values.append(-1)
                missing.append(tag)
        if not missing:
            return tuple(values)
        if now < self._outage.down_until:
            return await self._local.current(tags)
        try:
            raw = await self._client.mget([self._prefix + t for t in missing])
        except DRIVER_ERRORS as exc:
            self._failed("current", exc)
            return await self._local.current(tags)
        until = now + self._cache_s
        fetched: dict[str, int] = {}
        for tag, value in zip(missing, raw, strict=True):
            # never below what this node saw or bumped (locally during an outage, say);
            # the local counters keep the highest value seen, for the next outage
            number = max(int(value) if value is not None else 0, self._local.get(tag))
            self._local.set_at_least(tag, number)
            fetched[tag] = number
            cache[tag] = (number, until)
        return tuple(v if v >= 0 else fetched[t] for t, v in zip(tags, values, strict=True))

    async def bump(self, tag: str) -> int:
        """INCR (1 command); local on error. The local cache takes the new value at once."""
        now = self._clock.monotonic()
        value: int | None = None
        if now >= self._outage.down_until:
            try:
                value = int(await self._client.incr(self._prefix + tag))
            except DRIVER_ERRORS as exc:
                self._failed("bump", exc)
        if value is None or value <= self._local.get(tag):
            # local >= every value seen here (a counter Redis lost must still move on)
            value = await self._local.bump(tag)
        self._local.set_at_least(tag, value)
        self._cache[tag] = (value, now + self._cache_s)
        return value

    def _failed(self, op: str, exc: BaseException) -> TierError:
        """Record a Redis failure (back off, report, log at most once per LOG_EVERY_S)."""
        return self._outage.failed(op, exc)

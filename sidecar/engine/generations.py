"""Purge generations per tag: purging a tag is one write, not a walk over its entries.

A generation is a record ``tag -> value`` where value is a random nonce (a negative
62-bit integer, never 0), plus one namespace-wide record, the *epoch*. A stored entry is
stamped with the values of its purge tags followed by the epoch's (`stamp`, at store
time); a lookup compares the stamp with the current values (`current`, absent = 0) and
treats the entry as purged (a miss, deleted lazily) unless every one is equal:
`is_current`. Purging a tag (`bump`) gives its record a new nonce; purging everything
(`bump_all`) gives the epoch one. Both are O(1) whatever the number of entries.

Expiry. A record lives as long as the longest-lived entry stamped from it: `stamp` creates
a missing record (with a fresh nonce) or extends it to the entry's `expires_at_ms`, never
shortens it; `bump` keeps the expiry (a purge of a tag that no live entry carries is a
no-op that stores nothing). So generations cost memory (here and in Redis) only for tags
of entries that may still be read, and 400k purges of distinct tags cost nothing once the
entries carrying them have expired; no entry lives longer than `max_ttl_seconds` (stores
are clamped, `sidecar.engine.entry_bounds`), nor does a record kept here. The records a process
keeps are capped (`MAX_RECORDS`, the `generations_max_records` setting). Why this is safe
against a record that disappears (expiry, eviction, a Redis FLUSH, a restart): stamps are
never 0 and nonces are never reused, so an entry whose record is gone compares as purged
(one extra miss); it can never look current again. (That holds for `RedisGenerations`;
`LocalGenerations`, with no record shared by the nodes, treats a tag never purged here as
0 -- see it.) With Redis, entries stamped by builds before nonces (counters >= 0, or no
epoch) compare as purged: after an upgrade their first lookup is a miss.

`LocalGenerations` (here) keeps the records in this process (one node; purges reach it
only). `sidecar.cluster.generations.RedisGenerations` shares them through Redis.

Soft purges (`purge(..., soft=True)`) mark entries stale instead of purging them. A record
also holds the values soft purges replaced, newest first, each with the instant it was
replaced (`Generation.soft`, at most `MAX_SOFT`): an entry whose stamp holds one of them was
soft-purged at that instant (`judge` answers `Verdict.SOFT`), any other mismatch is a purge.
A hard purge empties the list, so it wins over earlier soft ones. The list comes with the
value in the same read (in Redis: the same string), so a soft purge costs lookups nothing.
Beyond `MAX_SOFT` soft purges of one tag in a row, entries stamped before the oldest one
read as purged (a miss instead of a stale answer: safe). Records without a list (all
records written before soft purges existed) read as they always did.

Once per event (`purge(..., once=id)`): the purge is applied at most once per id. Here
(`LocalGenerations`) the ids applied are remembered in this process (`RecentIds`, the last
`MAX_RECENT_IDS`); `RedisGenerations` claims the id in Redis. A repeated id bumps nothing.

What is NOT guaranteed: entries without any purge tag carry no stamp and are not reached
by `bump_all`.
"""

from __future__ import annotations

import enum
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sidecar.core.clock import Clock, SystemClock
from sidecar.engine.generation_table import GenerationTable, Record
from sidecar.engine.recent_ids import MAX_RECENT_IDS, RecentIds

log = logging.getLogger("strata.sidecar.generations")

#: Records kept in one process at most (the `generations_max_records` setting): a record
#: costs 400-650 bytes of RSS (tag, nonce, expiry, dict slot, heap item; measured with tags
#: of 40-250 characters), so ~40-65 MiB at most. Beyond
#: it `RedisGenerations` forgets those expiring first (safe: one extra miss each) and
#: `LocalGenerations` replaces its records by one epoch bump.
MAX_RECORDS = 100_000
#: `LocalGenerations`: how long a purge record lives before any entry was seen (a year,
#: the default `max_ttl_seconds`).
MAX_LIFETIME_MS = 365 * 24 * 3600 * 1000
#: The table key of the namespace epoch (no tag is empty).
EPOCH = ""
#: Soft-replaced values a record remembers (newest first); older soft purges read as hard.
MAX_SOFT = 8

Soft = tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Generation:
    """What a lookup needs of one record: its `value` (0: no record) and the values soft
    purges replaced, newest first, with when (``(value, at_ms)``)."""

    value: int
    soft: Soft = ()


#: No record (a tag never purged, for `LocalGenerations`).
ABSENT = Generation(0)


class Verdict(enum.Enum):
    """What the generations say of a stamped entry (`judge`)."""

    CURRENT = "current"
    SOFT = "soft"
    PURGED = "purged"


def judge(stamp: Sequence[int], now: Sequence[Generation]) -> tuple[Verdict, int]:
    """The verdict on an entry stamped `stamp`, `now` being its tags' and epoch's
    generations now (`Generations.generations`), and for `Verdict.SOFT` the instant of the
    earliest soft purge that reached it (Unix ms; else 0). A stamp of another length (an
    older build's) is purged."""
    if len(stamp) != len(now):
        return Verdict.PURGED, 0
    since = 0
    for value, gen in zip(stamp, now, strict=True):
        if value == gen.value:
            continue
        at = next((at for old, at in gen.soft if old == value), None)
        if at is None:
            return Verdict.PURGED, 0
        since = at if not since else min(since, at)
    return (Verdict.SOFT, since) if since else (Verdict.CURRENT, 0)


def soft_replaced(value: int, soft: Soft, now_ms: int) -> Soft:
    """The list of a record whose `value` a soft purge replaces at `now_ms`."""
    return ((value, now_ms), *soft[: MAX_SOFT - 1])


def new_nonce() -> int:
    """A fresh generation value: random, negative, never 0."""
    return -(secrets.randbits(62) + 1)


def is_current(stamp: Sequence[int], current: Sequence[int]) -> bool:
    """Whether an entry stamped `stamp` is unpurged (neither purged nor soft-purged),
    `current` being the values of its tags and epoch now (`Generations.current`)."""
    return tuple(stamp) == tuple(current)


class Generations(Protocol):
    """Per-tag purge generations with expiry (see the module doc)."""

    async def stamp(self, tags: Sequence[str], expires_at_ms: int) -> tuple[int, ...]:
        """The stamp of an entry with purge `tags` that lives until `expires_at_ms`: the
        value of each tag, then the epoch's; creates or extends the records to outlive it."""
        ...

    async def current(self, tags: Sequence[str]) -> tuple[int, ...]:
        """The values of `tags` and then of the epoch now (0 for an absent record)."""
        ...

    async def generations(self, tags: Sequence[str]) -> tuple[Generation, ...]:
        """`current` with each record's soft-replaced values (for `judge`)."""
        ...

    async def bump(self, tag: str) -> None:
        """Purge every entry stamped with `tag`'s current value."""
        ...

    async def bump_all(self) -> None:
        """Purge every stamped entry (a new epoch)."""
        ...

    async def purge(self, names: Sequence[str], *, soft: bool = False, once: str = "") -> bool:
        """Bump each of `names` (tags; `EPOCH` for everything), soft or hard. With `once`
        (an event id) at most once per id (see the implementation for how far that
        reaches); whatever happened, this node knows the values of `names` now on return.
        Whether this call bumped (False: `once` was applied already)."""
        ...

    def live(self) -> int:
        """Records held in this process now (after dropping expired ones)."""
        ...

    def observe(self, expires_at_ms: int) -> None:
        """A stamped entry living until `expires_at_ms` was read (see `LocalGenerations`)."""
        ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...


class LocalGenerations:
    """Records in this process: purges reach it only. Not thread-safe (one event loop).

    Without a shared store there is no record every node agrees on, so this one differs
    from `RedisGenerations` in one rule: a tag nobody purged here has the value 0 and needs
    no record. Entries stamped by another sidecar, or by this one before a restart, are then
    current here unless this process purged one of their tags since it started (the shared
    tiers stay shared, and a restart keeps them). A purge (`bump`) gives the tag a nonce
    record that lives until the latest expiry of any entry this process has stamped or read
    (`observe`), so every entry it could have seen stays purged while it may be read (before
    any was seen, and at most: `max_lifetime_ms`, the longest an entry may live). So a flood
    of purges of distinct tags costs at most `max_records` records (400-650 bytes each), gone
    once the entries they could touch have expired. When the table is full, every record
    is dropped and the epoch bumped instead: safe, at the cost of one miss per entry.

    Not guaranteed: that a purge made before a restart (or on another node) reaches entries
    of shared tiers; that a purged entry this process never stamped or read, and that
    outlives every one it did, stays purged once the record expires (use Redis for both).
    """

    def __init__(
        self,
        clock: Clock | None = None,
        max_records: int = MAX_RECORDS,
        max_lifetime_ms: int = MAX_LIFETIME_MS,
        max_recent_ids: int = MAX_RECENT_IDS,
    ) -> None:
        """`max_lifetime_ms`: the longest an entry lives (the sidecar's `max_ttl_seconds`,
        `sidecar.engine.entry_bounds`): how long a purge record lives when no entry has been
        seen yet, and at most. `max_records`: the records kept (see `MAX_RECORDS`).
        `max_recent_ids`: the event ids `purge(..., once=...)` remembers (the last ones;
        an id older than that is applied again: one extra miss per entry it reaches)."""
        self._clock = clock or SystemClock()
        self._max = max_records
        self._max_lifetime = max_lifetime_ms
        self._table = GenerationTable(max_records + 1)
        self._horizon_ms = 0  # the latest expiry of an entry stamped or read here
        self._applied = RecentIds(max_recent_ids)

    def observe(self, expires_at_ms: int) -> None:
        """An entry that lives until `expires_at_ms` was read: a purge must outlive it."""
        self._horizon_ms = max(self._horizon_ms, expires_at_ms)

    async def stamp(self, tags: Sequence[str], expires_at_ms: int) -> tuple[int, ...]:
        now = self._now()
        self.observe(expires_at_ms)
        table = self._table
        values: list[int] = []
        for tag in (*tags, EPOCH):
            record = table.get(tag, now)
            if record is None:
                values.append(0)
            else:
                table.extend(tag, record, expires_at_ms)
                values.append(record.value)
        return tuple(values)

    async def current(self, tags: Sequence[str]) -> tuple[int, ...]:
        now = self._now()
        get = self._table.get
        return tuple((r.value if (r := get(t, now)) is not None else 0) for t in (*tags, EPOCH))

    async def generations(self, tags: Sequence[str]) -> tuple[Generation, ...]:
        now = self._now()
        get = self._table.get
        return tuple(
            ABSENT if (r := get(t, now)) is None else Generation(r.value, r.soft)
            for t in (*tags, EPOCH)
        )

    async def purge(self, names: Sequence[str], *, soft: bool = False, once: str = "") -> bool:
        """Applied at most once per `once` in this process (the last `max_recent_ids`)."""
        if once and not self._applied.add(once):
            return False
        for name in names:
            await self._bump(name, soft)
        return True

    async def bump(self, tag: str) -> None:
        await self._bump(tag, False)

    async def _bump(self, tag: str, soft: bool) -> None:
        now = self._now()
        # until an entry has been seen, any may exist in a shared tier; none outlives the
        # longest lifetime allowed (an entry read from a shared tier may claim more)
        longest = now + self._max_lifetime
        until = min(self._horizon_ms, longest) if self._horizon_ms > now else longest
        record = self._table.get(tag, now)
        if record is None and tag != EPOCH and len(self._table) >= self._max:
            self._table = GenerationTable(self._max + 1)  # full: purge everything instead
            tag, record = EPOCH, None
            log.warning(
                "too many purged tags remembered; every entry is treated as purged",
                extra={"event.action": "generations_overflow"},
            )
        if record is None:  # no record: entries here carry 0
            replaced = soft_replaced(0, (), now) if soft else ()
            self._table.put(tag, Record(new_nonce(), until, soft=replaced))
        else:
            record.soft = soft_replaced(record.value, record.soft, now) if soft else ()
            record.value = new_nonce()
            self._table.extend(tag, record, until)

    async def bump_all(self) -> None:
        await self._bump(EPOCH, False)

    def live(self) -> int:
        self._now()
        return len(self._table)

    async def open(self) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        """Nothing to release."""

    def _now(self) -> int:
        now = self._clock.now_ms()
        self._table.prune(now)
        return now

"""`RedisGenerations`: purge generations shared by every sidecar through Redis.

The model (nonces, the epoch, record lifetimes, why a lost record is safe) is described in
`sidecar.engine.generations`; this module is the Redis adapter of its `Generations` seam.
Records live in Redis as ``{namespace}:g:<tag>`` and the epoch as ``{namespace}:ge``
(strings, each with a TTL): `stamp` runs one small script per record not already known
here to last long enough (one round trip for all), `bump` one script. Values read are
cached here for `cache_ms`, so a hot tag set costs one round trip per `cache_ms` per
sidecar, not one per lookup; a bump made here updates the cache at once. Other sidecars
see a purge within `cache_ms`.

Fail open: a Redis error (refused, timeout, pool exhausted, cluster error) is reported as
``tier_error("redis_generations", op)``, logged at most once per second, and the call is
answered from what this node last knew of the records (stamps of new records made here
meanwhile are local: those entries miss once Redis answers again). For `RETRY_AFTER_S`
after an error Redis is not asked again. A purge made while Redis cannot be reached
applies on this node at once and is kept (bounded by `max_pending`, counted, see
`sidecar.core.pending`) and replayed to Redis before this node reads Redis again, or by a
background retry every `RETRY_AFTER_S`; beyond `max_pending` the kept purges are replaced
by one epoch bump (every entry stored before it is treated as purged).

What is NOT guaranteed: that other sidecars stop serving a purged entry before the
purge reaches Redis (until then they use their own records), that kept purges survive a
restart of this sidecar, or that entries are removed from remote tiers at purge time (they
are removed when next read, or expire).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import cast

from sidecar.cluster.generation_scripts import BUMP_LUA, RESTORE_LUA, STAMP_LUA, record_value
from sidecar.cluster.outage import Outage
from sidecar.core.clock import Clock
from sidecar.core.errors import TierError
from sidecar.core.observer import NullObserver, Observer
from sidecar.core.pending import MAX_PENDING, PendingPurges, retry_until_done
from sidecar.engine.generation_table import GenerationTable, Record
from sidecar.engine.generations import EPOCH, MAX_RECORDS, new_nonce
from sidecar.tiers.redis_conn import DRIVER_ERRORS, connect

log = logging.getLogger("strata.sidecar.generations")

#: After a Redis error, records stay node-local for this long before Redis is tried again.
RETRY_AFTER_S = 1.0
#: At most one log line per this many seconds about failing Redis generations.
LOG_EVERY_S = 1.0
OBSERVER_TIER = "redis_generations"
MAX_CONNECTIONS = 32
#: Records per pipeline when replaying kept purges.
_BATCH = 500


class RedisGenerations:
    """Records shared through Redis, cached locally for `cache_ms`. See the module doc."""

    def __init__(
        self,
        url: str,
        clock: Clock,
        *,
        namespace: str = "strata",
        timeout_s: float = 0.05,
        cache_ms: int = 1000,
        observer: Observer | None = None,
        max_pending: int = MAX_PENDING,
        max_records: int = MAX_RECORDS,
    ) -> None:
        if timeout_s <= 0 or cache_ms < 0:
            raise ValueError("timeout_s must be positive and cache_ms not negative")
        self._clock = clock
        self._observer = observer or NullObserver()
        self._prefix = namespace + ":g:"
        self._epoch_key = namespace + ":ge"
        self._cache_s = cache_ms / 1000.0
        self._known = GenerationTable(max_records)
        self._pending: PendingPurges[str] = PendingPurges(
            OBSERVER_TIER, self._observer, clock, max_pending
        )
        self._replaying = False
        self._retry: asyncio.Task[None] | None = None
        self._outage = Outage(
            self._clock,
            self._observer,
            label=OBSERVER_TIER,
            what="redis generations",
            consequence="purges are node-local (kept for replay) until redis answers",
            action="generations_redis_error",
            logger=log,
            retry_after_s=RETRY_AFTER_S,
            log_every_s=LOG_EVERY_S,
        )
        self._client = connect(url, timeout_s, MAX_CONNECTIONS)

    async def open(self) -> None:
        """PING once; `TierError` if unreachable (records are local until Redis answers)."""
        try:
            await self._client.ping()
        except DRIVER_ERRORS as exc:
            raise self._failed("open", exc) from exc

    async def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
        try:
            await self._client.aclose()
        except DRIVER_ERRORS as exc:
            raise self._failed("close", exc) from exc

    def observe(self, expires_at_ms: int) -> None:
        """Nothing to do: every stamp made a record that outlives its entry."""

    def live(self) -> int:
        self._known.prune(self._clock.now_ms())
        return len(self._known)

    def pending(self) -> int:
        """Purges kept for replay (1 for a due epoch bump)."""
        return len(self._pending) + int(self._pending.all_due)

    async def current(self, tags: Sequence[str]) -> tuple[int, ...]:
        """Cached values where fresh; one round trip (GET + PTTL each) for the rest; what
        this node knows when Redis cannot be asked."""
        now = self._clock.now_ms()
        self._known.prune(now)
        mono = self._clock.monotonic()
        names = (*tags, EPOCH)
        values: list[int | None] = []
        missing: list[str] = []
        for name in names:
            record = self._known.get(name, now)
            if record is not None and record.fresh_until > mono:
                values.append(record.value)
            else:
                values.append(None)
                missing.append(name)
        if not missing:
            return tuple(cast(list[int], values))
        if not await self._reachable():
            return self._local(names, now)
        pipe = self._client.pipeline(transaction=False)
        for name in missing:
            pipe.get(self._key(name))
            pipe.pttl(self._key(name))
        try:
            raw = await pipe.execute()
        except DRIVER_ERRORS as exc:
            self._failed("current", exc)
            return self._local(names, now)
        fresh_until = mono + self._cache_s
        fetched: dict[str, int] = {}
        lost: list[tuple[str, Record]] = []
        for i, name in enumerate(missing):
            value, ttl = record_value(raw[2 * i]), int(raw[2 * i + 1])
            known = self._known.get(name, now)
            if not value and known is not None and known.value:
                lost.append((name, known))  # gone from Redis before its time
                continue
            fetched[name] = value
            # an absent record is remembered for cache_ms too (as 0), then forgotten
            lives_ms = ttl if value and ttl > 0 else int(self._cache_s * 1000) + 1
            self._known.put(name, Record(value, now + lives_ms, fresh_until))
        if lost:
            fetched.update(await self._restore(lost, now, fresh_until))
        return tuple(fetched[n] if v is None else v for n, v in zip(names, values, strict=True))

    async def _restore(
        self, lost: list[tuple[str, Record]], now: int, fresh_until: float
    ) -> dict[str, int]:
        """Write back records Redis lost before they expired (a restart without persistence,
        a FLUSH, an eviction) from what this node knows (read at most `cache_ms` ago, or
        made here), unless another node restored them first. Without this, one Redis
        restart would make every entry of every tier a miss. Not guaranteed: a purge made on
        another node within `cache_ms` before the loss is lost with it."""
        pipe = self._client.pipeline(transaction=False)
        for name, record in lost:
            lifetime = max(1, record.expires_at_ms - now)
            pipe.execute_command("EVAL", RESTORE_LUA, 1, self._key(name), record.value, lifetime)
        try:
            replies = await pipe.execute()
        except DRIVER_ERRORS as exc:
            self._failed("restore", exc)
            return {name: record.value for name, record in lost}
        out: dict[str, int] = {}
        for (name, _known), (raw, ttl) in zip(lost, replies, strict=True):
            value = int(raw)
            self._known.put(name, Record(value, now + max(1, int(ttl)), fresh_until))
            out[name] = value
        log.info(
            "generation records lost by redis restored from this node",
            extra={"event.action": "generations_restored", "strata.count": len(lost)},
        )
        return out

    async def stamp(self, tags: Sequence[str], expires_at_ms: int) -> tuple[int, ...]:
        """Values known here to be fresh and to outlive the entry are used as they are;
        the others go through the stamp script (one round trip for all)."""
        now = self._clock.now_ms()
        self._known.prune(now)
        mono = self._clock.monotonic()
        names = (*tags, EPOCH)
        values: list[int] = []
        todo: list[int] = []
        for i, name in enumerate(names):
            record = self._known.get(name, now)
            if (
                record is not None
                and record.value
                and record.fresh_until > mono
                and record.expires_at_ms >= expires_at_ms
            ):
                values.append(record.value)
            else:
                values.append(0)
                todo.append(i)
        if not todo:
            return tuple(values)
        # cache_ms of headroom: later stores of the same tags, for cache_ms, find the
        # record known here to outlive them and need no round trip
        lifetime_ms = max(1, expires_at_ms - now) + int(self._cache_s * 1000)
        if await self._reachable():
            pipe = self._client.pipeline(transaction=False)
            for i in todo:
                pipe.execute_command(
                    "EVAL", STAMP_LUA, 1, self._key(names[i]), new_nonce(), lifetime_ms
                )
            try:
                replies = await pipe.execute()
            except DRIVER_ERRORS as exc:
                self._failed("stamp", exc)
            else:
                for i, (raw, ttl) in zip(todo, replies, strict=True):
                    value = int(raw)
                    self._known.put(names[i], Record(value, now + int(ttl), mono + self._cache_s))
                    values[i] = value
                return tuple(values)
        for i in todo:  # Redis away: what this node knows, or a record of its own
            record = self._known.get(names[i], now)
            if record is None or not record.value:
                record = Record(new_nonce(), expires_at_ms)
                self._known.put(names[i], record)
            else:
                self._known.extend(names[i], record, expires_at_ms)
            values[i] = record.value
        return tuple(values)

    async def bump(self, tag: str) -> None:
        """One script in Redis; kept for replay (and applied here) when Redis cannot be
        reached. Either way this node sees the purge at once."""
        await self._bump(tag)

    async def bump_all(self) -> None:
        await self._bump(EPOCH)

    async def _bump(self, name: str) -> None:
        now = self._clock.now_ms()
        if await self._reachable():
            nonce = new_nonce()
            try:
                done = await self._client.execute_command(
                    "EVAL", BUMP_LUA, 1, self._key(name), nonce, self._lifetime(name, now)
                )
            except DRIVER_ERRORS as exc:
                self._failed("bump", exc)
            else:
                self._learn_bump(name, nonce, bool(int(done)), now)
                return
        record = self._known.get(name, now)
        if record is not None and record.value:
            record.value = new_nonce()  # applies here now; Redis gets its own on replay
        if name == EPOCH:
            self._pending.keep_all()
        else:
            self._pending.keep(name)
            if self._pending.all_due:  # overflowed: the epoch stands for them all
                self._bump_epoch_locally(now)
        self._start_retry()

    def _lifetime(self, name: str, now: int) -> int:
        """How long this node knows `name`'s record to live (ms), 0 if it knows none."""
        record = self._known.get(name, now)
        return max(0, record.expires_at_ms - now) if record is not None and record.value else 0

    def _learn_bump(self, name: str, nonce: int, applied: bool, now: int) -> None:
        record = self._known.get(name, now)
        if not applied:
            self._known.discard(name)  # no record in Redis: nothing carried it
        elif record is not None:
            record.value = nonce
            record.fresh_until = self._clock.monotonic() + self._cache_s

    def _bump_epoch_locally(self, now: int) -> None:
        record = self._known.get(EPOCH, now)
        if record is not None and record.value:
            record.value = new_nonce()

    async def _reachable(self) -> bool:
        """Whether Redis may be asked now: not inside the back-off after an error, and
        every purge kept for it replayed first (tried here when due)."""
        if self._outage.is_down():
            return False
        if not self._pending:
            return True
        if self._replaying:
            return False  # another call is replaying: answer locally meanwhile
        return await self._replay()

    async def _replay(self) -> bool:
        """Apply the kept purges to Redis (the epoch first); whether all were applied."""
        if self._replaying or not self._pending:
            return not self._pending
        self._replaying = True
        try:
            now = self._clock.now_ms()
            if self._pending.all_due:
                nonce = new_nonce()
                done = await self._client.execute_command(
                    "EVAL", BUMP_LUA, 1, self._epoch_key, nonce, self._lifetime(EPOCH, now)
                )
                self._learn_bump(EPOCH, nonce, bool(int(done)), now)
                self._pending.all_done()
            while self._pending:
                batch = self._pending.items()[:_BATCH]
                pipe = self._client.pipeline(transaction=False)
                nonces = [new_nonce() for _ in batch]
                for name, nonce in zip(batch, nonces, strict=True):
                    lifetime = self._lifetime(name, now)
                    pipe.execute_command("EVAL", BUMP_LUA, 1, self._key(name), nonce, lifetime)
                replies = await pipe.execute()
                for name, nonce, done in zip(batch, nonces, replies, strict=True):
                    self._learn_bump(name, nonce, bool(int(done)), now)
                self._pending.done(batch)
            return True
        except DRIVER_ERRORS as exc:
            self._failed("replay", exc)
            return False
        finally:
            self._replaying = False

    def _start_retry(self) -> None:
        if self._retry is None or self._retry.done():
            self._retry = asyncio.get_running_loop().create_task(
                retry_until_done(self._pending, self._replay_when_up, RETRY_AFTER_S)
            )

    async def _replay_when_up(self) -> bool:
        return not self._outage.is_down() and await self._replay()

    def _local(self, names: Sequence[str], now: int) -> tuple[int, ...]:
        get = self._known.get
        return tuple((r.value if (r := get(n, now)) is not None else 0) for n in names)

    def _key(self, name: str) -> str:
        return self._epoch_key if name == EPOCH else self._prefix + name

    def _failed(self, op: str, exc: BaseException) -> TierError:
        """Record a Redis failure (back off, report, log at most once per LOG_EVERY_S)."""
        return self._outage.failed(op, exc)

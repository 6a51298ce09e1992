"""`RedisGenerations`: purge generations shared by every sidecar through Redis.

The model (nonces, the epoch, record lifetimes, why a lost record is safe) is described in
`sidecar.engine.generations`; this module is the Redis adapter of its `Generations` seam.
Records live in Redis as ``{namespace}:g:<tag>`` and the epoch as ``{namespace}:ge``
(strings, each with a TTL; the format, soft-replaced values included, is in
`sidecar.cluster.generation_scripts`): `stamp` runs one small script per record not already
known here to last long enough (one round trip for all), a purge one script
(`sidecar.cluster.generation_purge`). Values read are cached here for `cache_ms`, so a hot
tag set costs one round trip per `cache_ms` per sidecar, not one per lookup; a purge made
here replies with the records' values, learnt at once. Other sidecars see a purge within
`cache_ms`, or at once when they apply the same event (`purge(..., once=id)`).

Once per event: `purge(names, once=id)` claims the id in Redis (for `claim_ms`, ten minutes by
default) and bumps only when the claim is new (`sidecar.cluster.generation_purge`); either
way this node learns the records' values from the reply and stops serving the purged
entries on return. Ids applied by this process are remembered too (`RecentIds`): a repeat
re-reads the values and bumps nothing, even while Redis is away. A once-purge made while
Redis cannot be reached is kept like any other (below); its replay claims no id, so the
event may be bumped twice: one extra miss per entry stamped in between, never a stale hit.

Fail open: a Redis error (refused, timeout, pool exhausted, cluster error) is reported as
``tier_error("redis_generations", op)``, logged at most once per second, and the call is
answered from what this node last knew of the records (stamps of new records made here
meanwhile are local: those entries miss once Redis answers again); Redis is not asked again
for `RETRY_AFTER_S`. A purge made meanwhile applies here at once and is kept for Redis
(`sidecar.cluster.generation_replay`).

What is NOT guaranteed: that other sidecars stop serving a purged entry before the
purge reaches Redis (until then they use their own records), that kept purges survive a
restart of this sidecar, or that entries are removed from remote tiers at purge time (they
are removed when next read, or expire).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import cast

from sidecar.cluster.generation_known import KnownRecords
from sidecar.cluster.generation_purge import (
    purge_in_redis,
    replay_in_redis,
    restore_in_redis,
)
from sidecar.cluster.generation_replay import Kept, KeptPurges
from sidecar.cluster.generation_scripts import (
    STAMP_LUA,
    encode_record,
    parse_record,
)
from sidecar.cluster.outage import Outage
from sidecar.core.clock import Clock
from sidecar.core.errors import TierError
from sidecar.core.observer import NullObserver, Observer
from sidecar.core.pending import MAX_PENDING, PendingPurges
from sidecar.engine.generation_table import Record
from sidecar.engine.generations import (
    EPOCH,
    MAX_RECORDS,
    Generation,
    new_nonce,
)
from sidecar.engine.recent_ids import MAX_RECENT_IDS, RecentIds
from sidecar.tiers.redis_conn import DRIVER_ERRORS, connect, is_cluster_url

log = logging.getLogger("strata.sidecar.generations")

#: After a Redis error, records stay node-local for this long before Redis is tried again.
RETRY_AFTER_S = 1.0
#: At most one log line per this many seconds about failing Redis generations.
LOG_EVERY_S = 1.0
OBSERVER_TIER = "redis_generations"
MAX_CONNECTIONS = 32
#: How long an event's claim (``<id>#<content digest>``) lives in Redis: a replay within it
#: bumps nothing; after it, the event is applied again (one extra miss per entry reached,
#: never a stale answer). It needs to cover the time for every node to apply an event
#: (milliseconds to seconds) plus a node's or the broker's short outage or a rolling
#: restart; ten minutes does, and bounds the claims a flood leaves in Redis (~200 bytes
#: each: ~120 MB at 1,000 events/s, where a day was ~17 GB).
CLAIM_MS = 10 * 60 * 1000


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
        claim_ms: int = CLAIM_MS,
        max_recent_ids: int = MAX_RECENT_IDS,
    ) -> None:
        """`claim_ms`: how long an event id stays claimed in Redis; `max_recent_ids`: the
        ids this process remembers applying (see the module doc)."""
        if timeout_s <= 0 or cache_ms < 0 or claim_ms <= 0:
            raise ValueError("timeout_s and claim_ms must be positive and cache_ms not negative")
        self._clock = clock
        self._observer = observer or NullObserver()
        self._prefix = namespace + ":g:"
        self._epoch_key = namespace + ":ge"
        self._claim_prefix = namespace + ":purge-event:"
        self._claim_ms = claim_ms
        self._cluster = is_cluster_url(url)
        self._cache_s = cache_ms / 1000.0
        self._known = KnownRecords(max_records, cache_ms)
        self._applied = RecentIds(max_recent_ids)
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
        self._kept = KeptPurges(
            PendingPurges(OBSERVER_TIER, self._observer, clock, max_pending),
            self._apply_kept,
            self._failed,
            self._outage.is_down,
            RETRY_AFTER_S,
        )

    async def open(self) -> None:
        """PING once; `TierError` if unreachable (records are local until Redis answers)."""
        try:
            await self._client.ping()
        except DRIVER_ERRORS as exc:
            raise self._failed("open", exc) from exc

    async def close(self) -> None:
        await self._kept.close()
        try:
            await self._client.aclose()
        except DRIVER_ERRORS as exc:
            raise self._failed("close", exc) from exc

    def observe(self, expires_at_ms: int) -> None:
        """Nothing to do: every stamp made a record that outlives its entry."""

    def live(self) -> int:
        self._known.table.prune(self._clock.now_ms())
        return len(self._known.table)

    def pending(self) -> int:
        """Purges kept for replay (1 for a due epoch bump)."""
        return len(self._kept)

    async def current(self, tags: Sequence[str]) -> tuple[int, ...]:
        return tuple(g.value for g in await self.generations(tags))

    async def generations(self, tags: Sequence[str]) -> tuple[Generation, ...]:
        """Cached values where fresh; one round trip (GET + PTTL each) for the rest; what
        this node knows when Redis cannot be asked."""
        now = self._clock.now_ms()
        self._known.table.prune(now)
        mono = self._clock.monotonic()
        names = (*tags, EPOCH)
        values: list[Generation | None] = []
        missing: list[str] = []
        for name in names:
            values.append(fresh := self._known.fresh(name, now, mono))
            if fresh is None:
                missing.append(name)
        if not missing:
            return cast(tuple[Generation, ...], tuple(values))
        if not await self._reachable():
            return self._known.local(names, now)
        pipe = self._client.pipeline(transaction=False)
        for name in missing:
            pipe.get(self._key(name))
            pipe.pttl(self._key(name))
        try:
            raw = await pipe.execute()
        except DRIVER_ERRORS as exc:
            self._failed("current", exc)
            return self._known.local(names, now)
        fresh_until = mono + self._cache_s
        fetched: dict[str, Generation] = {}
        lost: list[tuple[str, Record]] = []
        for i, name in enumerate(missing):
            known = self._known.table.get(name, now)
            if not parse_record(raw[2 * i])[0] and known is not None and known.value:
                lost.append((name, known))  # gone from Redis before its time
                continue
            fetched[name] = self._known.learn(
                name, (raw[2 * i], int(raw[2 * i + 1])), now, fresh_until
            )
        if lost:
            fetched.update(await self._restore(lost, now, fresh_until))
        return tuple(fetched[n] if v is None else v for n, v in zip(names, values, strict=True))

    async def _restore(
        self, lost: list[tuple[str, Record]], now: int, fresh_until: float
    ) -> dict[str, Generation]:
        """Write back records Redis lost before they expired (a restart without persistence,
        a FLUSH, an eviction) from what this node knows (read at most `cache_ms` ago, or
        made here), unless another node restored them first. Without this, one Redis
        restart would make every entry of every tier a miss. Not guaranteed: a purge made on
        another node within `cache_ms` before the loss is lost with it."""
        items = [
            (self._key(n), encode_record(r.value, r.soft), max(1, r.expires_at_ms - now))
            for n, r in lost
        ]
        try:
            replies = await restore_in_redis(self._client, items)
        except DRIVER_ERRORS as exc:
            self._failed("restore", exc)
            return {name: Generation(record.value, record.soft) for name, record in lost}
        out: dict[str, Generation] = {}
        for (name, _known), (raw, ttl) in zip(lost, replies, strict=True):
            out[name] = self._known.learn(name, (raw, max(1, ttl)), now, fresh_until)
        log.info(
            "generation records lost by redis restored from this node",
            extra={"event.action": "generations_restored", "strata.count": len(lost)},
        )
        return out

    async def stamp(self, tags: Sequence[str], expires_at_ms: int) -> tuple[int, ...]:
        """Values known here to be fresh and to outlive the entry are used as they are;
        the others go through the stamp script (one round trip for all)."""
        now = self._clock.now_ms()
        self._known.table.prune(now)
        mono = self._clock.monotonic()
        names = (*tags, EPOCH)
        values: list[int] = []
        todo: list[int] = []
        for i, name in enumerate(names):
            record = self._known.table.get(name, now)
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
                    value, soft = parse_record(raw)
                    record = Record(value, now + int(ttl), mono + self._cache_s, soft)
                    self._known.table.put(names[i], record)
                    values[i] = value
                return tuple(values)
        for i in todo:  # Redis away: what this node knows, or a record of its own
            record = self._known.table.get(names[i], now)
            if record is None or not record.value:
                record = Record(new_nonce(), expires_at_ms)
                self._known.table.put(names[i], record)
            else:
                self._known.table.extend(names[i], record, expires_at_ms)
            values[i] = record.value
        return tuple(values)

    async def bump(self, tag: str) -> None:
        """One script in Redis; kept for replay (and applied here) when Redis cannot be
        reached. Either way this node sees the purge at once."""
        await self.purge([tag])

    async def bump_all(self) -> None:
        await self.purge([EPOCH])

    async def purge(self, names: Sequence[str], *, soft: bool = False, once: str = "") -> bool:
        """Bump `names` in one script (claiming `once` first when given) and learn their
        values from its reply; see the module doc for `once` and for Redis being away."""
        names = list(dict.fromkeys(names))
        if not names:
            return False
        if once and once in self._applied:
            await self._refresh(names)  # applied here already: only be current
            return False
        now = self._clock.now_ms()
        if await self._reachable():
            records = [(new_nonce(), self._known.lifetime(name, now)) for name in names]
            try:
                claimed, replies = await purge_in_redis(
                    self._client,
                    cluster=self._cluster,
                    keys=[self._key(name) for name in names],
                    records=records,
                    soft=soft,
                    now_ms=now,
                    claim_key=self._claim_prefix + once if once else "",
                    claim_ms=self._claim_ms,
                )
            except DRIVER_ERRORS as exc:
                self._failed("bump", exc)
            else:
                fresh_until = self._clock.monotonic() + self._cache_s
                for name, replied in zip(names, replies, strict=True):
                    self._known.learn_purged(name, replied, now, fresh_until)
                if once:
                    self._applied.add(once)
                return claimed
        for name in names:
            self._keep(name, soft, now)
        if once:
            self._applied.add(once)
        return True

    async def _refresh(self, names: Sequence[str]) -> None:
        """Read `names` from Redis now, whatever this node cached."""
        self._known.forget_freshness(names, self._clock.now_ms())
        await self.generations([n for n in names if n != EPOCH])

    def _keep(self, name: str, soft: bool, now: int) -> None:
        """Apply a purge here and keep it for Redis."""
        self._known.bump_here(name, soft, now)
        if self._kept.keep(name, soft):  # overflowed: the epoch stands for them all
            self._known.bump_epoch_here(now)

    async def _reachable(self) -> bool:
        """Whether Redis may be asked now: not inside the back-off after an error, and
        every purge kept for it replayed first (tried here when due)."""
        return not self._outage.is_down() and await self._kept.replayed()

    async def _apply_kept(self, batch: Sequence[Kept]) -> None:
        """Replay kept purges to Redis, learning the records' values."""
        now = self._clock.now_ms()
        items = [
            (self._key(n), soft, new_nonce(), self._known.lifetime(n, now)) for n, soft in batch
        ]
        replies = await replay_in_redis(self._client, items, now)
        fresh_until = self._clock.monotonic() + self._cache_s
        for (name, _soft), replied in zip(batch, replies, strict=True):
            self._known.learn_purged(name, replied, now, fresh_until)

    def _key(self, name: str) -> str:
        return self._epoch_key if name == EPOCH else self._prefix + name

    def _failed(self, op: str, exc: BaseException) -> TierError:
        """Record a Redis failure (back off, report, log at most once per LOG_EVERY_S)."""
        return self._outage.failed(op, exc)

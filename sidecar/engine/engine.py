"""The cache engine: read-through over tiers, backfill, variants, coalescing.

Transport-agnostic (no gRPC types). Every public method validates its input against
`Limits` first and raises `InvalidRequestError` (counted and reported to the observer) for
bad input. A tier that fails is skipped (`TierError`); a lookup never fails because of a
tier. A miss is a `LookupResult` with outcome MISS.

What the engine does not guarantee: that an entry stored is there on the next lookup
(tiers evict), ordering between a Store and a concurrent Invalidate of the same key (the
later one to reach a tier wins), or coalescing across sidecars: that needs cluster-wide
`leases` (e.g. `sidecar.cluster.leases.RedisLeases`), and is then only as good as they are.

Purges by tag and by route prefix use generation counters (`sidecar.engine.generations`), so they
cost O(1) whatever the number of entries:

* `store` stamps an entry with the current counters of its purge tags: its `tags`, plus the
  implicit tag ``route:v<N>:<route>:`` when its key has the shape ``v<N>:<route>:<digest>``
  (the text up to the second ``:``; ``<N>`` the plugin's key format version, 1 to 999).
  An entry with no purge tag costs nothing.
* A lookup that finds an entry with purge tags reads their counters (with
  `RedisGenerations`: one MGET per `cache_ms` per hot tag set, cached in between); if any
  has moved past the stamp, the entry was purged: the lookup is a MISS and the entry is
  deleted from every tier (lazily; ``evicted(tier, "purged", 1)``). An entry whose stamp
  cannot be vouched for (stamped by an older build, or its record is gone) is a miss too.
* Purges that cannot reach a shared tier are kept and replayed before it serves again
  (`sidecar.tiers.replaying`, wrapped around every tier without `EAGER_PURGE`).
* `invalidate_tag` bumps the tag's counter and also deletes eagerly, now, on the tiers that
  declare `EAGER_PURGE` (the memory tier: node-local, its tag index makes that cheap and
  frees RAM at once). Shared tiers (Redis, Memcached, PostgreSQL) are never walked; their
  entries go when next read, or expire. `invalidate_prefix` does the same for a prefix that
  is exactly ``v<N>:<route>:`` (bump of the implicit route tag + eager `delete_prefix` on
  `EAGER_PURGE` tiers); any other prefix falls back to an eager `delete_prefix` on every
  tier that can (Redis, PostgreSQL, memory), so it does NOT reach Memcached.
* The count an invalidation returns (`dropped`) is the number of entries dropped now on
  this node by those eager deletes (the bump itself drops nothing yet).

With `RedisGenerations` another sidecar sees a purge within `cache_ms` (it may serve a
purged entry until then), and an entry stored elsewhere within `cache_ms` after a purge
may be dropped once more when that node learns the new counter (one extra miss).

Placement (`sidecar.engine.placement`): with a `PlacementPolicy`, an engine-level
`FrequencySketch` counts every lookup of a (primary) key on this node, and `store` writes
an entry only to the tiers the policy picks for its size and that count (memory always;
Redis/Memcached only for hot keys, by size; PostgreSQL for every entry when durable). A
store also deletes the key from the tiers it does not write, so an older version there
cannot shadow the new one. A hit found below memory is backfilled only into the faster
tiers the policy allows for that entry (memory always): a cold key read from PostgreSQL
goes back to memory only, a hot one to Redis too. Without a policy (the default) every
tier is written and backfilled, as before. With `Budgets` too, shared tiers whose last
sampled usage is at or above their byte budget are left out of both (`sidecar.engine.budgets`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from sidecar.core.clock import Clock
from sidecar.core.errors import InvalidRequestError, TierError
from sidecar.core.limits import Limits, check_coalesce_wait, check_entry, check_headers, check_key
from sidecar.core.limits import check_tag as _check_tag
from sidecar.core.model import (
    FORMAT_VERSION,
    CachedResponse,
    EngineCounters,
    Headers,
    LookupResult,
    Outcome,
    StoreResult,
    StoreStatus,
    TierSnapshot,
)
from sidecar.core.observer import NullObserver, Observer
from sidecar.engine.budgets import Budgets
from sidecar.engine.coalesce import Leases, LocalLeases, SingleFlight
from sidecar.engine.entry_bounds import ClampReporter, bound_entry
from sidecar.engine.generations import Generations, LocalGenerations, is_current
from sidecar.engine.placement import PlacementPolicy, entry_size
from sidecar.engine.variants import is_marker, new_marker, variant_key
from sidecar.policy.sketch import FrequencySketch
from sidecar.tiers import deadline
from sidecar.tiers.base import EAGER_PURGE, SetStatus, Tier, TierSkippedError
from sidecar.tiers.codec import CorruptEntryError
from sidecar.tiers.replaying import ReplayingTier

log = logging.getLogger("strata.sidecar.engine")

#: The default of `lookup_budget_ms`: inside the plugin's default sidecar deadline (50 ms),
#: leaving it room for the round trip.
LOOKUP_BUDGET_MS = 40

_SET_TO_STORE = {
    SetStatus.STORED: StoreStatus.STORED,
    SetStatus.NOT_ADMITTED: StoreStatus.NOT_ADMITTED,
    SetStatus.TOO_LARGE: StoreStatus.TOO_LARGE,
}


class Engine:
    """Lookups, stores and invalidations over an ordered list of tiers (fastest first)."""

    def __init__(
        self,
        tiers: Sequence[Tier],
        clock: Clock,
        limits: Limits | None = None,
        lease_ttl_ms: int = 10_000,
        observer: Observer | None = None,
        *,
        leases: Leases | None = None,
        generations: Generations | None = None,
        placement: PlacementPolicy | None = None,
        frequency_capacity: int = 100_000,
        budgets: Budgets | None = None,
        lookup_budget_ms: int = LOOKUP_BUDGET_MS,
    ) -> None:
        """`leases` decide who fills a missing key (default: `LocalLeases` of
        `lease_ttl_ms`, i.e. per process; `lease_ttl_ms` is unused when they are given).
        `generations` are the per-tag purge counters (default: `LocalGenerations`, i.e.
        purges reach this process only). The engine opens and closes neither: their
        owner does. `placement` picks the tiers each entry is written and backfilled to
        (default None: every tier); its lookup frequencies come from a sketch sized for
        about `frequency_capacity` distinct keys (4 bytes per counter column: 100 000 ->
        512 KiB), made only when there is a policy. `budgets` (with a policy): shared tiers
        whose last sampled usage is at or above their byte budget are skipped by placement
        (counted by `Observer.placement_skipped`) and their snapshots carry budget and
        sample; the engine never samples, its owner calls `budgets.sample()`.
        `lookup_budget_ms` bounds the tier reads of one lookup (see `lookup`; 0: none)."""
        if not tiers:
            raise ValueError("an engine needs at least one tier")
        if lookup_budget_ms < 0:
            raise ValueError("lookup_budget_ms must not be negative")
        self._lookup_budget_s = lookup_budget_ms / 1000.0
        self._tiers = tuple(tiers)
        self._clock = clock
        self._limits = limits or Limits()
        self._observer = observer or NullObserver()
        self._leases: Leases = leases if leases is not None else LocalLeases(clock, lease_ttl_ms)
        self._generations: Generations = (
            generations if generations is not None else LocalGenerations(clock)
        )
        self._tiers = self._keep_purges(self._tiers)
        self._reads: SingleFlight[bytes, tuple[CachedResponse | None, int]] = SingleFlight()
        self._placement = placement
        self._sketch = FrequencySketch(frequency_capacity) if placement is not None else None
        self._names = tuple(t.name for t in self._tiers)
        self._budgets = budgets
        self._clamps = ClampReporter(clock, self._observer)
        self.counters = EngineCounters()

    @property
    def limits(self) -> Limits:
        return self._limits

    @property
    def tiers(self) -> tuple[Tier, ...]:
        return self._tiers

    @property
    def placement(self) -> PlacementPolicy | None:
        return self._placement

    @property
    def budgets(self) -> Budgets | None:
        return self._budgets

    def frequency(self, key: bytes) -> int:
        """Estimated lookups of `key` on this node (0 without a placement policy)."""
        return self._sketch.frequency(key) if self._sketch is not None else 0

    def _placed(self, entry: CachedResponse, frequency: int) -> frozenset[int] | None:
        """Indexes of the tiers `entry` belongs in, or None for every tier (no policy)."""
        if self._placement is None:
            return None
        size = entry_size(entry)
        over = self._budgets.over_budget() if self._budgets is not None else frozenset()
        names = self._placement.tiers_for(size, frequency, self._names, over)
        if over:
            wanted = self._placement.tiers_for(size, frequency, self._names)
            for name in sorted(wanted - names):
                self._observer.placement_skipped(name, "budget")
        return frozenset(i for i, name in enumerate(self._names) if name in names)

    # -- lookups -----------------------------------------------------------------------

    async def lookup(
        self,
        key: bytes,
        request_headers: Headers = (),
        coalesce_wait_ms: int = 0,
        *,
        timeout_s: float | None = None,
    ) -> LookupResult:
        """Find `key` (and its variant for `request_headers`) in the fastest tier.

        Deadline: the tier reads get `lookup_budget_ms` (or `timeout_s`, what is left of
        the caller's own deadline when the transport knows it, if smaller); each call to a
        tier behind a circuit breaker is bounded by what is left of that (see
        `sidecar.tiers.deadline`), and tiers with nothing left are skipped: a miss, never an
        error. A coalesced lookup has its capped wait on top for the wait and the read
        after it. The memory tier never waits and is always read."""
        self._validate("lookup", lambda: self._check_lookup(key, request_headers))
        self.counters.lookups += 1
        if self._sketch is not None:
            self._sketch.increment(key)
        budget = self._lookup_budget_s or None
        if timeout_s is not None:
            budget = timeout_s if budget is None else min(budget, timeout_s)
        start = deadline.now()
        with deadline.until(None if budget is None else start + budget):
            result = await self._find(key, request_headers)
        if result.outcome is Outcome.STALE or (
            result.outcome is Outcome.MISS and coalesce_wait_ms > 0
        ):
            wait_s = check_coalesce_wait(coalesce_wait_ms, self._limits) / 1000.0
            with deadline.until(None if budget is None else start + budget + wait_s):
                result = await self._coalesce(key, request_headers, result, coalesce_wait_ms)
        self._count_lookup(result)
        return result

    def _check_lookup(self, key: bytes, request_headers: Headers) -> None:
        check_key(key, self._limits)
        check_headers(request_headers, self._limits, "request_headers")

    async def _find(self, key: bytes, request_headers: Headers) -> LookupResult:
        now = self._clock.now_ms()
        entry, tier = await self._read(key, key)
        found = key
        if entry is not None and is_marker(entry):
            found = variant_key(key, entry, request_headers)
            entry, tier = await self._read(found, key)
        if entry is None or is_marker(entry):
            return LookupResult(Outcome.MISS, now_ms=now)
        if await self._purged(key, entry):
            self._observer.evicted(self._tiers[tier].name, "purged", 1)
            for i in range(len(self._tiers)):
                await self._guarded(i, "delete", lambda t: t.delete(found))
            return LookupResult(Outcome.MISS, now_ms=now)
        age = max(0, now - entry.stored_at_ms)
        if age < entry.ttl_ms:
            outcome = Outcome.HIT
        elif now < entry.expires_at_ms:
            outcome = Outcome.STALE
        else:
            return LookupResult(Outcome.MISS, now_ms=now)
        return LookupResult(outcome, entry, age_ms=age, tier=self._tiers[tier].name, now_ms=now)

    async def _purged(self, key: bytes, entry: CachedResponse) -> bool:
        """Whether `entry` (under `key`) was purged since it was stamped: a purge tag or
        the epoch has another value now, or its record is gone (`sidecar.engine.generations`)."""
        tags = _purge_tags(key, entry)
        if not tags:
            return False
        self._generations.observe(entry.expires_at_ms)
        return not is_current(entry.tag_generations, await self._generations.current(tags))

    async def _coalesce(
        self, key: bytes, request_headers: Headers, found: LookupResult, wait_ms: int
    ) -> LookupResult:
        """First caller of a stale key (always) or of a missing key (when it asks to
        coalesce) gets the fill lease, so one request refreshes it; others of a missing key
        wait for that fill (bounded), others of a stale key get the stale entry at once."""
        if await self._leases.try_acquire(key):
            return _with(found, fill_lease=True)
        if found.outcome is Outcome.STALE:
            return found
        wait_s = check_coalesce_wait(wait_ms, self._limits) / 1000.0
        filled = await self._leases.wait(key, wait_s)
        self._observer.coalesced("filled" if filled else "timeout")
        if not filled:
            return found
        again = await self._find(key, request_headers)
        if again.outcome is Outcome.MISS:
            return again
        self.counters.coalesced += 1
        return _with(again, coalesced=True)

    async def _read(self, key: bytes, primary: bytes) -> tuple[CachedResponse | None, int]:
        """The entry from the fastest tier that has it, backfilling faster tiers (those
        the placement policy allows for it at the lookup count of `primary`, the key a
        variant is filed under). A memory hit never reads the frequency sketch."""
        first = await self._get(0, key)
        if first is not None or len(self._tiers) == 1:
            return first, 0
        try:
            return await self._reads.do(key, lambda: self._read_below(key, self.frequency(primary)))
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise
            return None, 0  # the caller reading for us gave up; not us: a miss below

    async def _read_below(self, key: bytes, frequency: int) -> tuple[CachedResponse | None, int]:
        for i in range(1, len(self._tiers)):
            entry = await self._get(i, key)
            if entry is not None:
                placed = self._placed(entry, frequency)
                for j in range(i):
                    if j == 0 or placed is None or j in placed:
                        await self._set(j, key, entry)
                return entry, i
        return None, 0

    async def _get(self, i: int, key: bytes) -> CachedResponse | None:
        tier = self._tiers[i]
        try:
            entry = await tier.get(key)
        except CorruptEntryError as exc:
            await self._drop_corrupt(i, key, exc)
            return None
        except TierError as exc:
            self._tier_failed(tier.name, "get", exc)
            return None
        if entry is not None and entry.format_version != FORMAT_VERSION:
            self._observer.evicted(tier.name, "unknown_format", 1)
            await self._guarded(i, "delete", lambda t: t.delete(key))
            return None
        return entry

    async def _drop_corrupt(self, i: int, key: bytes, exc: CorruptEntryError) -> None:
        """A tier raised `CorruptEntryError` for `key` (tiers that can should answer a miss
        themselves): a miss for this call only, logged, counted as evicted(tier,
        "corrupt") and deleted from that tier (best effort)."""
        tier = self._tiers[i]
        log.warning(
            "unreadable entry dropped; answered as a miss",
            extra={
                "event.action": "corrupt_entry",
                "strata.tier": tier.name,
                "error.message": str(exc),
            },
        )
        self._observer.evicted(tier.name, "corrupt", 1)
        try:
            await tier.delete(key)
        except CorruptEntryError:
            pass  # nothing more to do; the next reader tries again
        except TierError as error:
            self._tier_failed(tier.name, "delete", error)

    def _tier_failed(self, tier: str, operation: str, exc: TierError) -> None:
        """Report a tier call that raised: a skip if it was never made (circuit open, no
        time left, ...: `TierSkippedError`), else an error."""
        if isinstance(exc, TierSkippedError):
            self._observer.tier_skipped(tier, exc.reason)
        else:
            self._observer.tier_error(tier, operation)

    # -- stores ------------------------------------------------------------------------

    async def store(
        self, key: bytes, entry: CachedResponse, request_headers: Headers = ()
    ) -> StoreResult:
        """File `entry` under `key` (or its variant) in every tier the placement policy
        picks for it (every tier without one), then end the fill lease on `key`, waking
        coalesced lookups. A stored_at ahead of the clock, and durations beyond
        `max_ttl_ms`, are clamped first (`sidecar.engine.entry_bounds`)."""
        self._validate("store", lambda: self._check_store(key, entry, request_headers))
        now = self._clock.now_ms()
        entry, clamped = bound_entry(entry, self._limits, now)  # stored_at <= now, max TTL
        if clamped:
            self._clamps.report(clamped, self._limits)
        tags = _purge_tags(key, entry)
        if tags or entry.tag_generations:
            stamp = await self._generations.stamp(tags, entry.expires_at_ms) if tags else ()
            entry = replace(entry, tag_generations=stamp)
        self.counters.stores += 1
        if entry.expires_at_ms <= now:
            status = StoreStatus.EXPIRED
        else:
            target = key
            frequency = self.frequency(key)
            if entry.vary:
                target = await self._file_variant(key, entry, request_headers, frequency)
            status = await self._write(target, entry, frequency)
        waiters = await self._leases.release(key)
        self._observer.store(status.value)
        return StoreResult(status, waiters)

    def _check_store(self, key: bytes, entry: CachedResponse, request_headers: Headers) -> None:
        check_key(key, self._limits)
        check_entry(entry, self._limits)
        check_headers(request_headers, self._limits, "request_headers")

    async def _file_variant(
        self, key: bytes, entry: CachedResponse, request_headers: Headers, frequency: int
    ) -> bytes:
        current, _ = await self._read(key, key)
        if current is not None and is_marker(current) and current.vary == entry.vary:
            marker = new_marker(entry, nonce=current.body)
        else:
            marker = new_marker(entry)
        await self._write(key, marker, frequency)
        return variant_key(key, marker, request_headers)

    async def _write(self, key: bytes, entry: CachedResponse, frequency: int) -> StoreStatus:
        """Set `entry` on its tiers; delete `key` from the others (an older version there
        must not shadow this one)."""
        placed = self._placed(entry, frequency)
        statuses: list[SetStatus | None] = []
        for i in range(len(self._tiers)):
            if placed is None or i in placed:
                statuses.append(await self._set(i, key, entry))
            else:
                await self._guarded(i, "delete", lambda t: t.delete(key))
        if SetStatus.STORED in statuses:
            return StoreStatus.STORED
        known = [s for s in statuses if s is not None]
        return _SET_TO_STORE[known[0]] if known else StoreStatus.NOT_ADMITTED

    async def _set(self, i: int, key: bytes, entry: CachedResponse) -> SetStatus | None:
        tier = self._tiers[i]
        try:
            return await tier.set(key, entry)
        except TierError as exc:
            self._tier_failed(tier.name, "set", exc)
            return None

    async def release(self, key: bytes) -> int:
        """Give up the fill lease on `key`; returns how many lookups were waiting."""
        self._validate("release", lambda: check_key(key, self._limits))
        return await self._leases.release(key)

    # -- invalidation ------------------------------------------------------------------

    async def invalidate_key(self, key: bytes) -> int:
        """Drop `key` (its variants become unreachable with its marker)."""
        self._validate("invalidate", lambda: check_key(key, self._limits))
        return await self._invalidate("key", "delete", lambda t: t.delete(key))

    async def invalidate_prefix(self, prefix: bytes) -> int:
        """Drop every key starting with `prefix` (variants included). A route prefix
        (exactly ``v<N>:<route>:``) is one bump of its implicit tag, plus an eager delete on
        `EAGER_PURGE` tiers; any other prefix is deleted eagerly on every tier that can
        (not Memcached). Returns the entries dropped now on this node."""
        self._validate("invalidate", lambda: check_key(prefix, self._limits, "prefix"))
        route = route_tag(prefix)
        if route is not None and _route_prefix(prefix) == len(prefix):
            await self._generations.bump(route)
            return await self._invalidate(
                "prefix", "delete_prefix", lambda t: t.delete_prefix(prefix), eager_only=True
            )
        return await self._invalidate("prefix", "delete_prefix", lambda t: t.delete_prefix(prefix))

    async def invalidate_tag(self, tag: str) -> int:
        """Drop every entry carrying `tag`: one bump of its generation (O(1)), plus an
        eager delete on `EAGER_PURGE` tiers. Returns the entries dropped now on this node."""
        self._validate("invalidate", lambda: _check_tag(tag, self._limits))
        await self._generations.bump(tag)
        return await self._invalidate(
            "tag", "delete_tag", lambda t: t.delete_tag(tag), eager_only=True
        )

    def _keep_purges(self, tiers: Sequence[Tier]) -> tuple[Tier, ...]:
        """Every tier not purged eagerly (the shared ones) behind a `ReplayingTier`: a
        purge it cannot apply now is kept and applied before it serves again; too many
        kept become one namespace-wide generation bump."""
        return tuple(
            tier
            if EAGER_PURGE in tier.capabilities or isinstance(tier, ReplayingTier)
            else ReplayingTier(
                tier, self._clock, self._generations.bump_all, observer=self._observer
            )
            for tier in tiers
        )

    async def _invalidate(
        self,
        kind: str,
        operation: str,
        drop: Callable[[Tier], Awaitable[int | bool]],
        *,
        eager_only: bool = False,
    ) -> int:
        dropped = 0
        for i, tier in enumerate(self._tiers):
            if eager_only and EAGER_PURGE not in tier.capabilities:
                continue
            dropped += await self._guarded(i, operation, drop)
        self.counters.invalidations += 1
        self._observer.invalidated(kind, dropped)
        return dropped

    async def _guarded(
        self, i: int, operation: str, call: Callable[[Tier], Awaitable[int | bool]]
    ) -> int:
        """Run a counting tier operation; a failing tier counts as 0 and is reported."""
        tier = self._tiers[i]
        try:
            return int(await call(tier))
        except TierError as exc:
            self._tier_failed(tier.name, operation, exc)
            return 0

    # -- housekeeping ------------------------------------------------------------------

    async def sweep(self) -> int:
        """Drop expired entries from every tier and forget expired leases."""
        await self._leases.sweep()
        dropped = 0
        for tier in self._tiers:
            try:
                dropped += await tier.sweep()
            except TierError as exc:
                self._tier_failed(tier.name, "sweep", exc)
        return dropped

    def snapshot(self) -> list[TierSnapshot]:
        snapshots = [t.snapshot() for t in self._tiers]
        if self._budgets is None:
            return snapshots
        return [self._budgets.annotate(s) for s in snapshots]

    def wake_waiters(self) -> int:
        """End every coalesced wait now (each looks again and, unless the entry arrived,
        answers a miss): called when the sidecar drains, so no call waits through the
        drain for a fill that may now be stored in another sidecar."""
        return self._leases.wake_all()

    async def close(self) -> None:
        for tier in self._tiers:
            await tier.close()

    # -- helpers -----------------------------------------------------------------------

    def _validate(self, operation: str, check: Callable[[], object]) -> None:
        try:
            check()
        except InvalidRequestError as exc:
            self.note_rejected(operation, exc.reason)
            raise

    def note_rejected(self, operation: str, reason: str) -> None:
        """Count a refused request (also used by the transport for undecodable input)."""
        self.counters.rejected_requests += 1
        by = self.counters.rejected_by_reason
        by[reason] = by.get(reason, 0) + 1
        self._observer.rejected(operation, reason)

    def _count_lookup(self, result: LookupResult) -> None:
        if result.outcome is Outcome.HIT:
            self.counters.hits += 1
        elif result.outcome is Outcome.STALE:
            self.counters.stale_hits += 1
        else:
            self.counters.misses += 1
        self._observer.lookup(result.outcome.value, result.tier)


def _with(result: LookupResult, fill_lease: bool = False, coalesced: bool = False) -> LookupResult:
    return LookupResult(
        result.outcome,
        result.entry,
        age_ms=result.age_ms,
        tier=result.tier,
        fill_lease=fill_lease,
        coalesced=coalesced,
        now_ms=result.now_ms,
    )


#: Keys of this shape carry an implicit purge tag: ``v<N>:<route>:<digest>``, ``<N>`` the
#: plugin's key format version (``v1:`` and ``v2:`` so far; each its own route tag).
_ROUTE_SCHEME = re.compile(rb"v[1-9][0-9]{0,2}:")
ROUTE_TAG_PREFIX = "route:"


def _route_prefix(key: bytes) -> int:
    """The length of ``v<N>:<route>:`` at the start of `key` (route not empty), or 0."""
    scheme = _ROUTE_SCHEME.match(key)
    if scheme is None:
        return 0
    end = key.find(b":", scheme.end())
    return end + 1 if end > scheme.end() else 0


def route_tag(key: bytes) -> str | None:
    """The implicit purge tag of a key ``v<N>:<route>:...``: ``route:v<N>:<route>:`` (the key
    bytes read as latin-1, so every key maps to one tag); None for other keys."""
    end = _route_prefix(key)
    return ROUTE_TAG_PREFIX + key[:end].decode("latin-1") if end else None


def _purge_tags(key: bytes, entry: CachedResponse) -> tuple[str, ...]:
    """The tags whose generations an entry under `key` is stamped with, in stamp order."""
    route = route_tag(key)
    return entry.tags if route is None else (*entry.tags, route)

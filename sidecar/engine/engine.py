"""The cache engine: read-through over tiers, backfill, variants, coalescing, purges.

Transport-agnostic (no gRPC types, no Redis client). Every public method validates its input
against `Limits` first and raises `InvalidRequestError` (counted and reported to the
observer) for bad input. A tier that fails is skipped (`TierError`, `sidecar.engine.tier_calls`);
a lookup never fails because of a tier. A miss is a `LookupResult` with outcome MISS.

The work is done by one object per concern, wired here: `sidecar.engine.reads` (lookups,
backfill, coalescing), `sidecar.engine.stores` (stores, variants), `sidecar.engine.purge`
(purge tags, route tags, invalidations), `sidecar.engine.placing` (placement within byte
budgets). Every seam has a do-nothing default: `EveryTier` placement (write and backfill
every tier), `NoBudgets`, `NoFrequencies` (when placement needs no lookup counts),
`NullObserver`, `LocalLeases`, `LocalGenerations`.

What the engine does not guarantee: that an entry stored is there on the next lookup
(tiers evict), ordering between a Store and a concurrent Invalidate of the same key (the
later one to reach a tier wins), or coalescing across sidecars: that needs cluster-wide
`leases` (e.g. `sidecar.cluster.leases.RedisLeases`), and is then only as good as they are.
Purges by tag and by route are generation bumps, O(1) whatever the number of entries:
see `sidecar.engine.purge` for what they reach and when, and for soft purges (entries
marked stale instead of dropped) and purges applied once per event id (`purge_tags`,
`purge_all`). `peek` looks without side effects (`sidecar.engine.peek`). Every store and
invalidation, and every purge the generations apply, is told to `changes`
(`sidecar.engine.changes`: the `Watch` stream's queues, for the clients' near-caches).

Placement (`sidecar.engine.placement`): with a `PlacementPolicy`, `store` writes an entry
only to the tiers the policy picks for its size and its key's lookup count on this node
(memory always; shared RAM only for hot keys, by size; durable tiers for every entry when
durable). A store also deletes the key from the tiers it does not write, so an older
version there cannot shadow the new one. A hit found below memory is backfilled only into
the faster tiers the policy allows for that entry (memory always). With `Budgets` too,
shared tiers whose last sampled usage is at or above their byte budget are left out of both
(`sidecar.engine.budgets`). Lookup counts: one `Frequencies` (a `FrequencySketch`), which the
owner may share with the memory tier's admission (`sidecar.policy.shared`); `Reads` says
what is counted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from sidecar.core.clock import Clock
from sidecar.core.errors import InvalidRequestError
from sidecar.core.limits import Limits, check_entry, check_headers, check_key, check_tag
from sidecar.core.model import (
    CachedResponse,
    EngineCounters,
    Headers,
    LookupResult,
    Peeked,
    StoreResult,
    TierSnapshot,
)
from sidecar.core.observer import NullObserver, Observer
from sidecar.engine.budgets import NO_BUDGETS, ByteBudgets
from sidecar.engine.changes import Broadcaster
from sidecar.engine.coalesce import Leases, LocalLeases
from sidecar.engine.generations import Generations, LocalGenerations
from sidecar.engine.peek import peek
from sidecar.engine.placement import EVERY_TIER, NO_FREQUENCIES, Frequencies, Placement
from sidecar.engine.placing import Placer
from sidecar.engine.purge import (
    Purges,
    check_once,
    check_purge_tags,
    check_route,
    check_route_name,
    keep_purges,
    route_tag,
)
from sidecar.engine.reads import Reads
from sidecar.engine.stores import Stores
from sidecar.engine.tier_calls import TierCalls
from sidecar.engine.watched_generations import WatchedGenerations
from sidecar.policy.sketch import FrequencySketch
from sidecar.tiers.base import Tier

__all__ = ["FREQUENCY_CAPACITY", "LOOKUP_BUDGET_MS", "Engine"]

#: The default of `lookup_budget_ms`: inside the plugin's default sidecar deadline (50 ms),
#: leaving it room for the round trip.
LOOKUP_BUDGET_MS = 40
#: Distinct keys the engine's own frequency sketch is sized for when it makes one (4 bytes
#: per counter column: 100 000 -> 512 KiB).
FREQUENCY_CAPACITY = 100_000


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
        placement: Placement = EVERY_TIER,
        frequencies: Frequencies | None = None,
        budgets: ByteBudgets = NO_BUDGETS,
        lookup_budget_ms: int = LOOKUP_BUDGET_MS,
    ) -> None:
        """`leases` decide who fills a missing key (default: `LocalLeases` of
        `lease_ttl_ms`, i.e. per process; `lease_ttl_ms` is unused when they are given).
        `generations` are the per-tag purge counters (default: `LocalGenerations`, i.e.
        purges reach this process only). The engine opens and closes neither: their
        owner does. `placement` picks the tiers each entry is written and backfilled to
        (default `EveryTier`: every tier). `frequencies` count lookups per key (each
        lookup once, see `sidecar.engine.reads`); pass the sketch the memory tier's
        admission reads to share one (`sidecar.policy.shared`). Default: a
        `FrequencySketch` of `FREQUENCY_CAPACITY` keys when `placement` needs frequencies,
        else `NoFrequencies`. `budgets`: shared tiers whose last sampled usage is at or
        above their byte budget are skipped by placement (counted by
        `Observer.placement_skipped`) and their snapshots carry budget and sample; the
        engine never samples, its owner calls `budgets.sample()` (default `NoBudgets`).
        `lookup_budget_ms` bounds the tier reads of one lookup (see `lookup`; 0: none)."""
        if not tiers:
            raise ValueError("an engine needs at least one tier")
        if lookup_budget_ms < 0:
            raise ValueError("lookup_budget_ms must not be negative")
        self._clock = clock
        self._limits = limits or Limits()
        self._observer = observer or NullObserver()
        self._leases: Leases = leases if leases is not None else LocalLeases(clock, lease_ttl_ms)
        #: What changed, for the clients' near-caches (`sidecar.engine.changes`): stores and
        #: invalidations here, purges through the generations.
        self.changes = Broadcaster()
        self._generations: Generations = WatchedGenerations(
            generations if generations is not None else LocalGenerations(clock), self.changes
        )
        if frequencies is None:
            needed = placement.needs_frequencies
            frequencies = FrequencySketch(FREQUENCY_CAPACITY) if needed else NO_FREQUENCIES
        self.counters = EngineCounters()
        self._tiers = keep_purges(tiers, clock, self._generations, self._observer)
        calls = TierCalls(self._tiers, self._observer)
        self._calls = calls
        self._placer = Placer(self._tiers, placement, budgets, frequencies, self._observer)
        self._purges = Purges(calls, self._generations, self._limits, self.counters, self._observer)
        self._reads = Reads(
            calls,
            self._placer,
            self._purges,
            self._leases,
            clock,
            self._limits,
            self.counters,
            self._observer,
            lookup_budget_ms / 1000.0,
        )
        self._stores = Stores(
            calls,
            self._placer,
            self._purges,
            self._reads,
            self._leases,
            clock,
            self._limits,
            self.counters,
            self._observer,
        )

    @property
    def limits(self) -> Limits:
        return self._limits

    @property
    def tiers(self) -> tuple[Tier, ...]:
        return self._tiers

    @property
    def placement(self) -> Placement:
        return self._placer.placement

    @property
    def budgets(self) -> ByteBudgets:
        return self._placer.budgets

    @property
    def frequencies(self) -> Frequencies:
        return self._placer.frequencies

    def frequency(self, key: bytes) -> int:
        """Estimated lookups of `key` on this node (0 with `NoFrequencies`)."""
        return self._placer.frequency(key)

    # -- lookups and stores --------------------------------------------------------------

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
        return await self._reads.lookup(key, request_headers, coalesce_wait_ms, timeout_s)

    def _check_lookup(self, key: bytes, request_headers: Headers) -> None:
        check_key(key, self._limits)
        check_headers(request_headers, self._limits, "request_headers")

    async def store(
        self,
        key: bytes,
        entry: CachedResponse,
        request_headers: Headers = (),
        *,
        route: str = "",
    ) -> StoreResult:
        """File `entry` under `key` (or its variant) in every tier placement picks for it,
        then end the fill lease on `key`, waking coalesced lookups. A stored_at ahead of the
        clock, and durations beyond `max_ttl_ms`, are clamped first
        (`sidecar.engine.entry_bounds`). `route`: the key prefix of the entry's route
        (empty: none); `invalidate_route(route)` then reaches the entry on every tier. A
        route that `key` does not start with, or that cannot make a tag, is refused
        (`InvalidRequestError`, reason ``route_not_prefix`` / ``bad_route``). The route's
        own tag among `entry.tags` (an entry read back and stored again, e.g. refreshed by a
        304) is not counted against `max_tags`: it is the engine's to add."""
        if route and (tag := route_tag(route)) in entry.tags:
            entry = replace(entry, tags=tuple(t for t in entry.tags if t != tag))
        self._validate("store", lambda: self._check_store(key, entry, request_headers, route))
        try:
            return await self._stores.store(key, entry, request_headers, route)
        finally:
            self.changes.changed_keys((key,))

    def _check_store(
        self, key: bytes, entry: CachedResponse, request_headers: Headers, route: str
    ) -> None:
        check_key(key, self._limits)
        check_entry(entry, self._limits)
        check_headers(request_headers, self._limits, "request_headers")
        if route:
            check_route(key, route, self._limits)

    async def release(self, key: bytes) -> int:
        """Give up the fill lease on `key`; returns how many lookups were waiting."""
        self._validate("release", lambda: check_key(key, self._limits))
        return await self._leases.release(key)

    # -- invalidation ------------------------------------------------------------------

    async def invalidate_key(self, key: bytes, *, local_only: bool = False) -> int:
        """Drop `key` (its variants become unreachable with its marker); with `local_only`
        from the `NODE_LOCAL` tiers only (the shared ones were purged by another node)."""
        self._validate("invalidate", lambda: check_key(key, self._limits))
        try:
            await self._reads.promoter.purged(key)
            return await self._purges.invalidate_key(key, local_only=local_only)
        finally:
            self.changes.changed_keys((key,))

    async def invalidate_prefix(self, prefix: bytes, *, local_only: bool = False) -> int:
        """Drop every key starting with `prefix` (variants included) on every tier that
        can (a walk of Redis and PostgreSQL; not Memcached, see `sidecar.engine.purge`;
        `invalidate_route` is the O(1) purge of a route, on every tier); with `local_only`
        on the `NODE_LOCAL` tiers only. Returns the entries dropped now on this node."""
        self._validate("invalidate", lambda: check_key(prefix, self._limits, "prefix"))
        try:
            await self._reads.promoter.purged(prefix=prefix)
            return await self._purges.invalidate_prefix(prefix, local_only=local_only)
        finally:
            self.changes.changed_prefixes((prefix,))

    async def invalidate_route(self, route: str) -> int:
        """Drop every entry stored with `route` (`store(..., route=...)`): one bump of the
        route's tag, whether or not this node has seen the route, plus an eager delete of
        the prefix `route` on `EAGER_PURGE` tiers. Returns the entries dropped now on this
        node. A route that could not name a store's route is refused."""
        self._validate("invalidate", lambda: check_route_name(route, self._limits))
        try:  # the route's tag is told by the generations; entries without it by prefix
            return await self._purges.invalidate_route(route)
        finally:
            self.changes.changed_prefixes((route.encode("ascii"),))

    async def invalidate_tag(self, tag: str) -> int:
        """Drop every entry carrying `tag`: one bump of its generation (O(1)), plus an
        eager delete on `EAGER_PURGE` tiers. Returns the entries dropped now on this node.
        The same as `purge_tags([tag])`."""
        self._validate("invalidate", lambda: check_tag(tag, self._limits))
        return await self._purges.invalidate_tag(tag)

    async def purge_tags(self, tags: Sequence[str], *, soft: bool = False, once: str = "") -> int:
        """Purge (or with `soft`, mark stale) every entry carrying any of `tags`: one bump
        per tag (O(1) each, one round trip for all with Redis), plus, when hard, an eager
        delete on `EAGER_PURGE` tiers. A soft purge deletes nothing: entries stored before
        it are answered STALE with their freshness cut at the purge (served within their
        stale windows, which start then, and refreshed), or MISS when no window is left; an
        entry stored after it is fresh; a hard purge after it wins.

        `once` (an event id): the bump happens at most once per id (cluster-wide with
        `RedisGenerations`, in this process with `LocalGenerations`); when this call bumps
        nothing because the id was applied already, nothing is deleted eagerly either.
        Whatever happened, this node's view is current on return (no generation cache on
        this path). Returns the entries dropped now on this node. Invalid tags (or more than
        `MAX_PURGE_TAGS`), or a malformed `once`, are refused (`InvalidRequestError`). No
        tags: nothing happens (0). What is not guaranteed: see `sidecar.engine.purge`."""
        self._validate("invalidate", lambda: self._check_purge(tags, once))
        return await self._purges.purge_tags(tags, soft=soft, once=once)

    async def purge_all(self, *, soft: bool = False, once: str = "") -> int:
        """`purge_tags` for every stamped entry (every entry stored with a tag or a route):
        one bump of the namespace epoch; a hard one also empties the `EAGER_PURGE` tiers
        (entries without tags included). Not reached on shared tiers: entries stored with
        neither tags nor route (they carry no stamp)."""
        self._validate("invalidate", lambda: check_once(once))
        return await self._purges.purge_all(soft=soft, once=once)

    async def purge_event(
        self, tags: Sequence[str] | None, *, soft: bool = False, once: str = ""
    ) -> tuple[int, bool]:
        """`purge_tags(tags, ...)` (`purge_all` when `tags` is None), and whether it bumped
        (False: no tags, or `once` was applied already: a duplicate event)."""
        if tags is None:
            self._validate("invalidate", lambda: check_once(once))
            return await self._purges.purge_all_bumped(soft=soft, once=once)
        self._validate("invalidate", lambda: self._check_purge(tags, once))
        return await self._purges.purge_tags_bumped(tags, soft=soft, once=once)

    def _check_purge(self, tags: Sequence[str], once: str) -> None:
        check_purge_tags(tags, self._limits)
        check_once(once)

    async def peek(self, key: bytes, request_headers: Headers = ()) -> Peeked | None:
        """What a lookup of `key` (and its variant for `request_headers`) would find, or
        None for a miss, without a lookup's side effects: no counters, no fill lease, no
        frequency count, no backfill, no lazy delete (`sidecar.engine.peek`). For the admin
        API. A bad key or headers are refused (`InvalidRequestError`)."""
        self._validate("peek", lambda: self._check_lookup(key, request_headers))
        return await peek(self._tiers, self._purges, self._clock, key, request_headers)

    # -- housekeeping ------------------------------------------------------------------

    async def sweep(self) -> int:
        """Drop expired entries from every tier and forget expired leases."""
        await self._leases.sweep()
        return await self._calls.sweep()

    def snapshot(self) -> list[TierSnapshot]:
        return [self._placer.budgets.annotate(t.snapshot()) for t in self._tiers]

    def wake_waiters(self) -> int:
        """End every coalesced wait now (each looks again and, unless the entry arrived,
        answers a miss): called when the sidecar drains, so no call waits through the
        drain for a fill that may now be stored in another sidecar."""
        return self._leases.wake_all()

    async def close(self) -> None:
        await self._reads.promoter.drain()
        for tier in self._tiers:
            await tier.close()

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

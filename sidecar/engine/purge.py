"""Purges: stamping entries with their purge tags, judging them, and the three invalidations.

Purges by tag and by route use generation counters (`sidecar.engine.generations`), so they
cost O(1) whatever the number of entries:

* `Purges.stamp` (at store) adds the entry's route tag to its tags when the store names a
  route, and stamps the entry with the current counters of all its tags. The route tag of
  a route ``R`` (the key prefix the plugin sends with each store, ``v<N>:<route>:``) is
  ``route:R`` (`route_tag`), a pure function of the string: the engine never parses keys.
  An entry with no tag costs nothing.
* `Purges.purged` (at lookup) reads the counters of an entry's tags (with
  `RedisGenerations`: one MGET per `cache_ms` per hot tag set, cached in between); if any
  has moved past the stamp, the entry was purged (a miss, deleted from every tier lazily).
  An entry whose stamp cannot be vouched for (stamped by an older build, or its record is
  gone) is a miss too.
* Purges that cannot reach a shared tier are kept and replayed before it serves again
  (`sidecar.tiers.replaying`, wrapped around every tier without `EAGER_PURGE`: `keep_purges`).
* `invalidate_route(R)` bumps the route tag of ``R`` (one write whatever the number of
  entries; it reaches every tier, Memcached included, from any node, also after a restart
  with node-local generations) and deletes ``R`` eagerly on the `EAGER_PURGE` tiers.
* `invalidate_tag` bumps the tag's counter and also deletes eagerly, now, on the tiers that
  declare `EAGER_PURGE` (the memory tier: node-local, its tag index makes that cheap and
  frees RAM at once). Shared tiers are never walked; their entries go when next read, or
  expire.
* `invalidate_prefix(P)` drops every key starting with ``P`` on every tier that can
  (memory, Redis by SCAN, PostgreSQL by key range: a walk, not O(1)). A tier that cannot
  delete by prefix (Memcached) is NOT reached: its entries expire. A prefix is a key
  prefix, never read as a route (the engine does not parse keys): to purge a route, use
  `invalidate_route`. With ``local_only`` (an event read from the bus: the node that
  accepted the purge deleted it from the shared tiers already) key and prefix deletes reach
  the `NODE_LOCAL` tiers only.
* `purge_tags(tags, soft=..., once=...)` / `purge_all(...)` are the purges of the contract
  (every tag of a list; the epoch for all). Hard: a bump, then eager deletes of the tags
  (of everything, for `purge_all`) on `EAGER_PURGE` tiers. Soft: a soft bump and no delete
  anywhere: entries stamped before it are answered stale (`soft_stale`). With `once` (an
  event id) the bump is made at most once per id (`Generations.purge`); when this call made
  none (the id was applied already, here or, with Redis, on another node), nothing is
  deleted eagerly either: this node's view of the values is current on return, so the
  entries it holds that the purge reached are judged purged when read, while an entry
  stored since (e.g. after another node's purge) stays. `invalidate_tag(t)` is
  `purge_tags([t])`.
* The count an invalidation returns is the number of entries dropped now on this node by
  those eager deletes (the bump itself drops nothing yet).

With `RedisGenerations` another sidecar sees a purge within `cache_ms` (it may serve a
purged entry until then), and an entry stored elsewhere within `cache_ms` after a purge
may be dropped once more when that node learns the new counter (one extra miss). Entries
stored by builds that found the route tag by parsing the key carry a stamp of another
length: their first lookup after an upgrade is a miss.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from sidecar.core.clock import Clock
from sidecar.core.errors import InvalidRequestError
from sidecar.core.limits import Limits, check_tag
from sidecar.core.model import CachedResponse, EngineCounters
from sidecar.core.observer import Observer
from sidecar.engine.generations import EPOCH, Generations, Verdict, judge
from sidecar.engine.tier_calls import TierCalls
from sidecar.tiers.base import EAGER_PURGE, NODE_LOCAL, Tier
from sidecar.tiers.replaying import ReplayingTier

__all__ = [
    "MAX_ONCE_CHARS",
    "MAX_PURGE_TAGS",
    "ROUTE_TAG_PREFIX",
    "Purges",
    "check_once",
    "check_purge_tags",
    "check_route",
    "check_route_name",
    "keep_purges",
    "route_tag",
    "soft_stale",
]

#: Route tags are this followed by the route (the key prefix) itself.
ROUTE_TAG_PREFIX = "route:"
#: Tags one `purge_tags` call may name (an event's 1000 URLs make a few tags each).
MAX_PURGE_TAGS = 20_000
#: The longest `once` id (an event id is at most 128 characters).
MAX_ONCE_CHARS = 256
_ONCE_TEXT = re.compile(r"^[\x21-\x7e]*$")


def route_tag(route: str) -> str:
    """The purge tag of the entries of `route` (a pure function: no parsing)."""
    return ROUTE_TAG_PREFIX + route


def check_route(key: bytes, route: str, limits: Limits) -> None:
    """A store's `route` must make a valid tag (`check_route_name`) and be a prefix of
    `key`."""
    check_route_name(route, limits)
    if not key.startswith(route.encode("ascii")):
        raise InvalidRequestError(
            "route", f"the key does not start with the route {route[:40]!r}", "route_not_prefix"
        )


def check_route_name(route: str, limits: Limits) -> None:
    """`route` must be non-empty and make a valid tag (`check_tag`: printable ASCII, no
    spaces, at most `max_tag_bytes` with its prefix)."""
    if not route:
        raise InvalidRequestError("route", "the route is empty", "bad_route")
    try:
        check_tag(route_tag(route), limits, "route")
    except InvalidRequestError as exc:
        raise InvalidRequestError(
            "route",
            f"{route[:40]!r} cannot name a route ({exc.message}; route tags are "
            f"{ROUTE_TAG_PREFIX!r} + the route)",
            "bad_route",
        ) from exc


def check_purge_tags(tags: Sequence[str], limits: Limits) -> None:
    """Each tag valid (`check_tag`), at most `MAX_PURGE_TAGS` of them."""
    if isinstance(tags, str):
        raise InvalidRequestError("tags", "must be a list of tags, not one string", "bad_tag")
    if len(tags) > MAX_PURGE_TAGS:
        raise InvalidRequestError("tags", f"more than {MAX_PURGE_TAGS} tags", "too_many_tags")
    for i, tag in enumerate(tags):
        check_tag(tag, limits, f"tags[{i}]")


def check_once(once: str) -> None:
    """An idempotence id: printable ASCII without spaces, at most `MAX_ONCE_CHARS`
    (empty: none)."""
    if len(once) > MAX_ONCE_CHARS or not _ONCE_TEXT.match(once):
        raise InvalidRequestError(
            "once",
            f"must be printable ASCII without spaces, at most {MAX_ONCE_CHARS} characters",
            "bad_once",
        )


def soft_stale(entry: CachedResponse, since_ms: int, now_ms: int) -> CachedResponse | None:
    """`entry`, soft-purged at `since_ms`, as a lookup at `now_ms` answers it: its freshness
    lifetime cut to end at the purge (never after now, whatever the purging node's clock
    said), so it is stale now and its stale-while-revalidate / stale-if-error windows
    start at the purge; None when no window is left (a miss). An entry already stale
    before the purge is unchanged."""
    ttl = max(0, min(entry.ttl_ms, since_ms - entry.stored_at_ms, now_ms - entry.stored_at_ms))
    if ttl == entry.ttl_ms and now_ms - entry.stored_at_ms >= ttl:
        return entry
    window = max(entry.stale_while_revalidate_ms, entry.stale_if_error_ms)
    if now_ms >= entry.stored_at_ms + ttl + window:
        return None
    return replace(entry, ttl_ms=ttl)


def keep_purges(
    tiers: Sequence[Tier], clock: Clock, generations: Generations, observer: Observer
) -> tuple[Tier, ...]:
    """Every tier not purged eagerly (the shared ones) behind a `ReplayingTier`: a purge it
    cannot apply now is kept and applied before it serves again; too many kept become one
    namespace-wide generation bump."""
    return tuple(
        tier
        if EAGER_PURGE in tier.capabilities or isinstance(tier, ReplayingTier)
        else ReplayingTier(tier, clock, generations.bump_all, observer=observer)
        for tier in tiers
    )


class Purges:
    """Stamps and judges entries by their purge tags; runs invalidations over the tiers."""

    def __init__(
        self,
        calls: TierCalls,
        generations: Generations,
        limits: Limits,
        counters: EngineCounters,
        observer: Observer,
    ) -> None:
        self._calls = calls
        self._generations = generations
        self._limits = limits
        self._counters = counters
        self._observer = observer

    async def stamp(self, entry: CachedResponse, route: str) -> CachedResponse:
        """`entry` with its route's tag added (when `route`, already checked) and stamped
        with the current generations of its tags; a stamp the caller sent is dropped."""
        tags = entry.tags
        if route:
            tag = route_tag(route)
            if tag not in tags:
                tags = (*tags, tag)
        if not tags and not entry.tag_generations:
            return entry
        stamp = await self._generations.stamp(tags, entry.expires_at_ms) if tags else ()
        return replace(entry, tags=tags, tag_generations=stamp)

    async def judge(self, entry: CachedResponse, *, observe: bool = True) -> tuple[Verdict, int]:
        """Whether `entry` was purged or soft-purged since it was stamped (and when it was
        soft-purged), by `sidecar.engine.generations.judge`: a stamp whose record is gone
        reads as purged. An entry with neither tags nor stamp never asks the generations.
        `observe`: tell the generations the entry was read (not for a read-only look)."""
        if not entry.tags and not entry.tag_generations:
            return Verdict.CURRENT, 0
        if observe:
            self._generations.observe(entry.expires_at_ms)
        return judge(entry.tag_generations, await self._generations.generations(entry.tags))

    async def invalidate_key(self, key: bytes, *, local_only: bool = False) -> int:
        return await self._invalidate(
            "key", "delete", lambda t: t.delete(key), local_only=local_only
        )

    async def invalidate_prefix(self, prefix: bytes, *, local_only: bool = False) -> int:
        return await self._invalidate(
            "prefix", "delete_prefix", lambda t: t.delete_prefix(prefix), local_only=local_only
        )

    async def invalidate_route(self, route: str) -> int:
        await self._generations.bump(route_tag(route))
        prefix = route.encode("ascii")
        return await self._invalidate(
            "route", "delete_prefix", lambda t: t.delete_prefix(prefix), eager_only=True
        )

    async def invalidate_tag(self, tag: str) -> int:
        return await self.purge_tags((tag,))

    async def purge_tags(self, tags: Sequence[str], *, soft: bool = False, once: str = "") -> int:
        """See `Engine.purge_tags` (the module doc)."""
        return (await self.purge_tags_bumped(tags, soft=soft, once=once))[0]

    async def purge_tags_bumped(
        self, tags: Sequence[str], *, soft: bool = False, once: str = ""
    ) -> tuple[int, bool]:
        """`purge_tags`, and whether it bumped (False: no tags, or `once` was applied)."""
        tags = tuple(dict.fromkeys(tags))
        bumped = bool(tags) and await self._generations.purge(tags, soft=soft, once=once)
        if soft or not bumped:
            return self._counted("soft_tag" if soft else "tag", 0), bumped

        async def drop(tier: Tier) -> int:
            return sum([await tier.delete_tag(tag) for tag in tags])

        return await self._invalidate("tag", "delete_tag", drop, eager_only=True), True

    async def purge_all(self, *, soft: bool = False, once: str = "") -> int:
        """See `Engine.purge_all` (the module doc)."""
        return (await self.purge_all_bumped(soft=soft, once=once))[0]

    async def purge_all_bumped(self, *, soft: bool = False, once: str = "") -> tuple[int, bool]:
        """`purge_all` (the epoch, and a hard one empties the `EAGER_PURGE` tiers), and
        whether it bumped (False: `once` was applied already)."""
        bumped = await self._generations.purge((EPOCH,), soft=soft, once=once)
        if soft or not bumped:
            return self._counted("soft_all" if soft else "all", 0), bumped
        dropped = await self._invalidate(
            "all", "delete_prefix", lambda t: t.delete_prefix(b""), eager_only=True
        )
        return dropped, True

    async def _invalidate(
        self,
        kind: str,
        operation: str,
        drop: Callable[[Tier], Awaitable[int | bool]],
        *,
        eager_only: bool = False,
        local_only: bool = False,
    ) -> int:
        dropped = 0
        for i, tier in enumerate(self._calls.tiers):
            if eager_only and EAGER_PURGE not in tier.capabilities:
                continue
            if local_only and NODE_LOCAL not in tier.capabilities:
                continue
            dropped += await self._calls.guarded(i, operation, drop)
        return self._counted(kind, dropped)

    def _counted(self, kind: str, dropped: int) -> int:
        self._counters.invalidations += 1
        self._observer.invalidated(kind, dropped)
        return dropped

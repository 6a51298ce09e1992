"""`peek`: what a lookup of a key would find, without any of a lookup's side effects.

No engine counters or observer events, no fill lease, no frequency count, no backfill, no
lazy delete of purged, expired or unreadable entries, and the generations are not told the
entry was read. Tiers are read with their side-effect-free `peek(key)` when they have one
(the memory tier: no recency or frequency update, no hit/miss count); other tiers with
their ordinary `get` (a remote tier's own hit/miss counts, if it keeps any, may move). The
generations may still refresh what they cached of their records (a read of Redis), as any
read of them does.

Not guaranteed: that the next lookup finds the same (tiers evict, purges arrive), or the
lookup's deadline (a peek waits for each tier as long as the tier's own timeout).
"""

from __future__ import annotations

from sidecar.core.clock import Clock
from sidecar.core.errors import TierError
from sidecar.core.model import FORMAT_VERSION, CachedResponse, Headers, Peeked
from sidecar.engine.generations import Verdict
from sidecar.engine.purge import Purges, soft_stale
from sidecar.engine.variants import is_marker, variant_key
from sidecar.tiers.base import Tier
from sidecar.tiers.codec import CorruptEntryError

__all__ = ["peek"]


async def peek(
    tiers: tuple[Tier, ...], purges: Purges, clock: Clock, key: bytes, request_headers: Headers
) -> Peeked | None:
    """See the module doc. None when a lookup would answer a miss."""
    now = clock.now_ms()
    found = await _read(tiers, key)
    if found is not None and is_marker(found[0]):
        found = await _read(tiers, variant_key(key, found[0], request_headers))
    if found is None or is_marker(found[0]):
        return None
    entry, tier = found
    verdict, since = await purges.judge(entry, observe=False)
    state, stored_ttl = "fresh", None
    if verdict is Verdict.PURGED:
        return None
    if verdict is Verdict.SOFT:
        soft = soft_stale(entry, since, now)
        if soft is None:
            return None
        if soft is not entry:
            state, stored_ttl = "soft_purged", entry.ttl_ms
        entry = soft
    if now >= entry.expires_at_ms:
        return None
    if now - entry.stored_at_ms >= entry.ttl_ms and state == "fresh":
        state = "stale"
    return Peeked(tier.name, entry, state, stored_ttl)


async def _read(tiers: tuple[Tier, ...], key: bytes) -> tuple[CachedResponse, Tier] | None:
    """The entry of the fastest tier that holds a readable one (a tier that fails, or holds
    an unreadable or other-format entry, is passed over as a lookup would)."""
    for tier in tiers:
        look = getattr(tier, "peek", None)
        try:
            entry = await look(key) if callable(look) else await tier.get(key)
        except (TierError, CorruptEntryError):
            continue
        if entry is not None and entry.format_version == FORMAT_VERSION:
            return entry, tier
    return None

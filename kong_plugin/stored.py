"""A stored response and a lookup's answer as the plugin's decisions see them.

These are plain values: `kong_plugin.wire` converts them from and to the strata.v1
messages, so the decisions (`kong_plugin.decide`) never touch the wire types. Times are
seconds, the unit of `kong_plugin.freshness`; the wire converts the sidecar's milliseconds.

Not guaranteed: header names are lower-cased and lines of different names keep only the
order of their first line (`kong_plugin.headers.Headers`), so an entry read back is the
stored one up to that.
"""

from __future__ import annotations

from dataclasses import dataclass

from kong_plugin.freshness import EntryTiming
from kong_plugin.headers import Headers


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One stored response: what is replayed, its freshness facts, its purge tags and the
    request header names it varies on."""

    status: int
    headers: Headers
    body: bytes
    timing: EntryTiming
    tags: tuple[str, ...] = ()
    vary: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Found:
    """A lookup's answer: the entry (None on a miss), its age on the sidecar's clock when
    the sidecar answered, and whether this caller holds the key's fill lease."""

    entry: StoredEntry | None
    age_s: float = 0.0
    fill_lease: bool = False

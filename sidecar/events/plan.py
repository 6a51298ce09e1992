"""What an event means to the cache: the purges it asks for, as plain values.

`plan` maps every item of an event to tag purges through the tag scheme
(`sidecar.events.tagging`):

=============  ===========================================================================
``urls``       ``url:<path>[?<query>]`` as written and with the path lower-cased
``prefixes``   ``path:<prefix>/`` (everything under it) and ``path:<prefix>`` (the path
               itself), in both cases; deeper than ``PREFIX_DEPTH``: the ancestor's tag
``tags``       the tag as is
``flush``      ``route-name:<name>`` and ``service:<name>``; ``"*"``: one `PurgeAll`
=============  ===========================================================================

The extension fields (`sidecar.events.extensions`) are not tags and are passed on as they
are: ``routes`` as `PurgeRoute` (the engine knows its route tag), ``keys`` as `PurgeKey`,
``key_prefixes`` as `PurgeKeyPrefix` (never soft: the event refuses that), after the tag
purges.

Every operation carries the event's ``soft`` flag (mark stale instead of removing) and the
item that caused it (``urls[0]``, indexed in the event's canonical order, for logs). A tag
reached by several items is purged once; a `PurgeAll` makes every other operation
redundant, so it is returned alone.

Not guaranteed: the plan does not know which tags exist: most tags of most events reach
no entry on a given node, which costs a generation bump each. It is pure; applying it
(engine calls, in order, each idempotent) is the caller's business.
"""

from __future__ import annotations

from dataclasses import dataclass

from sidecar.events.event import InvalidationEvent
from sidecar.events.tagging import flush_tags, prefix_event_tags, url_event_tags

__all__ = [
    "Operation",
    "PurgeAll",
    "PurgeKey",
    "PurgeKeyPrefix",
    "PurgeRoute",
    "PurgeTag",
    "plan",
]


@dataclass(frozen=True, slots=True)
class PurgeTag:
    """Purge (or, when `soft`, mark stale) every entry carrying `tag`."""

    tag: str
    soft: bool
    cause: str


@dataclass(frozen=True, slots=True)
class PurgeAll:
    """Purge (or mark stale) every entry."""

    soft: bool
    cause: str


@dataclass(frozen=True, slots=True)
class PurgeRoute:
    """Purge (or mark stale) every entry stored with the route key prefix `route`."""

    route: str
    soft: bool
    cause: str


@dataclass(frozen=True, slots=True)
class PurgeKey:
    """Remove the entry of cache key `key` (its variants with it)."""

    key: str
    cause: str

    @property
    def soft(self) -> bool:
        """Never: a key purge removes the entry."""
        return False


@dataclass(frozen=True, slots=True)
class PurgeKeyPrefix:
    """Remove every entry whose cache key starts with `prefix`."""

    prefix: str
    cause: str

    @property
    def soft(self) -> bool:
        """Never: a key purge removes the entry."""
        return False


Operation = PurgeTag | PurgeAll | PurgeRoute | PurgeKey | PurgeKeyPrefix


def plan(event: InvalidationEvent) -> list[Operation]:
    """The operations `event` asks for (see the module docstring)."""
    if event.flushes_all:
        return [PurgeAll(event.soft, "flush")]
    causes: dict[str, str] = {}
    for i, url in enumerate(event.urls):
        for tag in url_event_tags(url):
            causes.setdefault(tag, f"urls[{i}]")
    for i, prefix in enumerate(event.prefixes):
        for tag in prefix_event_tags(prefix):
            causes.setdefault(tag, f"prefixes[{i}]")
    for i, tag in enumerate(event.tags):
        causes.setdefault(tag, f"tags[{i}]")
    if event.flush is not None:
        for tag in flush_tags(event.flush):
            causes.setdefault(tag, "flush")
    operations: list[Operation] = [
        PurgeTag(tag, event.soft, cause) for tag, cause in causes.items()
    ]
    operations.extend(PurgeRoute(r, event.soft, f"routes[{i}]") for i, r in enumerate(event.routes))
    operations.extend(PurgeKey(k, f"keys[{i}]") for i, k in enumerate(event.keys))
    operations.extend(
        PurgeKeyPrefix(p, f"key_prefixes[{i}]") for i, p in enumerate(event.key_prefixes)
    )
    return operations

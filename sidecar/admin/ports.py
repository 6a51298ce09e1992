"""What the admin API needs from the rest of the sidecar, as small protocols, so that it is
built and tested without an engine, Redis or Kafka.

* `Submitter`: `sidecar.invalidation.service.Invalidations` (every purge of this node goes
  through its ``submit``: applied here, published to every node);
* `Peeker`: `sidecar.engine.engine.Engine` (``peek``: what a lookup would find, read-only);
* `AdminObserver`: `sidecar.observability.metrics.PrometheusObserver` (``admin_request``).
"""

from __future__ import annotations

from typing import Protocol

from sidecar.core.model import CachedResponse, Headers
from sidecar.events import InvalidationEvent

__all__ = ["AdminObserver", "NullAdminObserver", "Peeked", "Peeker", "Submitted", "Submitter"]


class Submitted(Protocol):
    """What became of a submitted purge on this node."""

    @property
    def id(self) -> str: ...

    @property
    def dropped(self) -> int:
        """Entries dropped here (a lower bound for tiers that cannot count)."""
        ...

    @property
    def queued(self) -> bool:
        """Queued for publishing to the other nodes (False: no Kafka configured, or the
        outbox refused it)."""
        ...

    @property
    def duplicate(self) -> bool:
        """The same event (id and content) was already applied cluster-wide: nothing was
        purged again."""
        ...


class Submitter(Protocol):
    async def submit(self, event: InvalidationEvent) -> Submitted: ...


class Peeked(Protocol):
    """What a lookup of a key would find: the tier, the entry, and its state (``fresh``,
    ``stale`` or ``soft_purged``)."""

    @property
    def tier(self) -> str: ...

    @property
    def entry(self) -> CachedResponse: ...

    @property
    def state(self) -> str: ...

    @property
    def stored_ttl_ms(self) -> int | None:
        """The entry's stored freshness lifetime when a soft purge cut the one in `entry`;
        None when `entry` is as stored."""
        ...


class Peeker(Protocol):
    async def peek(self, key: bytes, request_headers: Headers = ()) -> Peeked | None: ...


class AdminObserver(Protocol):
    def admin_request(self, route: str, result: str) -> None:
        """One request answered: `route` (a closed set: `sidecar.admin.routes.ROUTES` and
        ``none`` before routing) and `result` (ok, not_found, unauthorized, bad_request,
        too_large, timeout, method_not_allowed, busy, evicted, error)."""
        ...


class NullAdminObserver:
    """Counts nothing."""

    def admin_request(self, route: str, result: str) -> None:
        return None

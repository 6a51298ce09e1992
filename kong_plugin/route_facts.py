"""What the plugin remembers per route between requests: its service's ``read_timeout``
(the cap of a coalesced wait), the route's and service's names (the ``route-name:``
and ``service:`` event tags of `kong_plugin.event_tags`) and where a background refresh
of the route goes (`kong_plugin.upstream_target`, read from both entities).

Each fact costs a PDK round trip to learn (``kong.router.get_route`` /
``kong.router.get_service``), so it is read once per route id and kept:

* the ``read_timeout`` is read the first time a lookup of the route may wait, and again
  whenever the names are refreshed;
* the names are read only on the store path (a response about to be stored), and again
  when they are older than `NAMES_MAX_AGE_S`: a renamed route or service is picked up by
  entries stored at most that long after the rename (earlier ones keep the old name's
  tag). A service read for the ``read_timeout`` counts as a fresh read of its name.
* the refresh target is read only by a request that holds a stale entry's fill lease
  with background refreshes on, and again when older than `NAMES_MAX_AGE_S` (two round
  trips: the route and its service);
* A route id seen by a plugin that is not attached to a route costs nothing extra: the
  handler already reads the matched route on every request and hands its name over
  (`RouteFacts.note_route_name`).

So a store costs at most two extra round trips per route per `NAMES_MAX_AGE_S` (none
while the names are fresh). The clock is injectable (monotonic seconds).

Not guaranteed: that the names are current (up to `NAMES_MAX_AGE_S` old); that facts of
more than `MAX_ROUTES` routes are kept (the route learned first is forgotten first, and
costs its round trips again when it comes back).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from kong_plugin.event_tags import ROUTE_NAME_TAG, SERVICE_TAG, name_tag
from kong_plugin.upstream_target import Target, Unusable

log = logging.getLogger("strata.plugin")

#: Seconds a route's and its service's names are used before they are read again.
NAMES_MAX_AGE_S = 60.0
#: Routes whose facts are kept at once.
MAX_ROUTES = 4096

#: Reads the matched route's name ("" when it has none): one PDK round trip.
ReadRoute = Callable[[], str]
#: Reads the matched service's (name, read_timeout in ms or None): one PDK round trip.
ReadService = Callable[[], tuple[str, int | None]]
#: Reads where a background refresh of the route goes: two PDK round trips.
ReadTarget = Callable[[], Target | Unusable]


@dataclass(frozen=True, slots=True)
class Names:
    """The names of a route and of its service (``""``: none)."""

    route: str = ""
    service: str = ""


@dataclass(slots=True)
class _Facts:
    read_timeout_ms: int | None = None
    service_name: str = ""
    service_read_at: float | None = None
    route_name: str = ""
    route_read_at: float | None = None
    target: Target | Unusable | None = None
    target_read_at: float | None = None


class RouteFacts:
    """Route id -> its facts, with bounded size; thread-safe."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_age_s: float = NAMES_MAX_AGE_S,
        max_routes: int = MAX_ROUTES,
    ) -> None:
        self._clock = clock
        self._max_age = max_age_s
        self._max_routes = max_routes
        self._facts: dict[str, _Facts] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._facts)

    def _entry(self, route_id: str) -> _Facts:
        with self._lock:
            facts = self._facts.get(route_id)
            if facts is None:
                while len(self._facts) >= self._max_routes:
                    del self._facts[next(iter(self._facts))]
                facts = self._facts[route_id] = _Facts()
            return facts

    def _read_service(self, facts: _Facts, read: ReadService, now: float) -> None:
        name, timeout = read()
        facts.service_name, facts.read_timeout_ms, facts.service_read_at = name, timeout, now

    def read_timeout(self, route_id: str, read_service: ReadService) -> int | None:
        """The route's service ``read_timeout`` in ms (None: it has none); read with
        `read_service` only when it was never read for this route."""
        facts = self._entry(route_id)
        if facts.service_read_at is None:
            self._read_service(facts, read_service, self._clock())
        return facts.read_timeout_ms

    def note_route_name(self, route_id: str, name: str) -> None:
        """The route's name, read anyway by the caller (no round trip of ours)."""
        facts = self._entry(route_id)
        facts.route_name, facts.route_read_at = name, self._clock()

    def _stale(self, read_at: float | None, now: float) -> bool:
        return read_at is None or now - read_at >= self._max_age

    def names(self, route_id: str, read_route: ReadRoute, read_service: ReadService) -> Names:
        """The route's and its service's names; each read again (one round trip each) when
        it was never read or is `NAMES_MAX_AGE_S` old."""
        facts = self._entry(route_id)
        now = self._clock()
        if self._stale(facts.route_read_at, now):
            facts.route_name, facts.route_read_at = read_route(), now
            _warn_unusable(ROUTE_NAME_TAG, "route", facts.route_name, route_id)
        if self._stale(facts.service_read_at, now):
            self._read_service(facts, read_service, now)
            _warn_unusable(SERVICE_TAG, "service", facts.service_name, route_id)
        return Names(facts.route_name, facts.service_name)

    def refresh_target(self, route_id: str, read_target: ReadTarget) -> Target | Unusable:
        """Where a background refresh of the route goes (`kong_plugin.upstream_target`):
        read with `read_target` when never read or `NAMES_MAX_AGE_S` old, like the names."""
        facts = self._entry(route_id)
        now = self._clock()
        if facts.target is None or self._stale(facts.target_read_at, now):
            facts.target, facts.target_read_at = read_target(), now
        return facts.target


def _warn_unusable(kind: str, what: str, name: str, route_id: str) -> None:
    if name and not name_tag(kind, name):
        log.warning(
            "the %s name %r (route %s) cannot be a tag (not printable ASCII, or too long): "
            "entries of this route carry no %s tag, and an event's flush of it reaches none",
            what,
            name,
            route_id or "(none)",
            kind,
        )

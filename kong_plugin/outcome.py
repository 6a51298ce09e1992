"""`Outcome`: what the cache did for one request, published once where it became final,
for whoever counts or samples it (the plugin server's metrics, the analytics events).

The handler publishes one `Outcome` per request that the plugin saw, at the point where the
answer is decided: in ``access`` for a hit, a bypass or an answer the plugin made itself; in
``response`` for a proxied response (stored or not); in ``log`` for a request whose upstream
could not be reached. Subscribers run synchronously in the publishing event, in registration
order: they must be cheap (a counter, an append to a bounded buffer) and must not block.

Not guaranteed: that a subscriber sees every request (one that raises is logged once per
`RAISE_LOG_INTERVAL_S` and skipped for that outcome; a request the plugin never saw, or
whose phase failed before publishing, has no outcome); an order between subscribers beyond
registration order; thread safety of a subscriber (publishing happens on the worker's event
loop thread and, for refreshes, on pool threads: a subscriber that is not thread-safe must
lock).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger("strata.plugin")

#: Seconds between two log lines about the same raising subscriber.
RAISE_LOG_INTERVAL_S = 60.0

Phase = Literal["access", "response", "log"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request's cache outcome.

    `result`: the ``X-Cache-Status`` word sent (``Hit``, ``Miss``, ``Refresh``, ``Stale``,
    ``Bypass``), or ``""`` when the plugin sent none (a write, an answer made by the plugin
    such as a 504 for ``only-if-cached``). `detail`: why, in the words of the
    ``Cache-Status`` ``detail`` parameter (a bypass reason such as ``cookie`` or
    ``sidecar-unavailable``; ``stored``, ``store-failed``, ``too-large``...; ``""`` none).
    `status`: the HTTP status the client got, 0 when the plugin does not know it at the
    point of publishing (a bypass decided in ``access``). `tier`: the tier that answered a
    hit (``near`` for the worker's near-cache; ``""`` none). `body_bytes`: the body bytes
    sent for a hit, or the stored body's bytes for a miss (-1 unknown). `key`: the cache key
    (``""`` none; subscribers hash it before it leaves the process). `started`: epoch
    seconds when the plugin's ``access`` phase began; `elapsed_s`: from then to publishing,
    on the plugin's clock (not Kong's request latency: Kong's own work before ``access``
    and after the last phase is not in it).
    """

    phase: Phase
    result: str
    detail: str
    method: str
    route_id: str
    consumer_id: str
    status: int
    tier: str
    body_bytes: int
    key: str
    started: float
    elapsed_s: float


Subscriber = Callable[[Outcome], None]

_lock = threading.Lock()
_subscribers: tuple[Subscriber, ...] = ()
_last_logged: dict[int, float] = {}


def subscribe(subscriber: Subscriber) -> Callable[[], None]:
    """Call `subscriber` with every outcome published from now on; returns the function
    that unsubscribes it (idempotent)."""
    global _subscribers  # noqa: PLW0603 - one registry per process, replaced atomically
    with _lock:
        _subscribers = (*_subscribers, subscriber)

    def unsubscribe() -> None:
        global _subscribers  # noqa: PLW0603
        with _lock:
            _subscribers = tuple(s for s in _subscribers if s is not subscriber)

    return unsubscribe


def publish(outcome: Outcome) -> None:
    """Hand `outcome` to every subscriber; a subscriber that raises is logged (rate-limited)
    and the others still run. Never raises."""
    for subscriber in _subscribers:
        try:
            subscriber(outcome)
        except Exception:
            now = time.monotonic()
            ident = id(subscriber)
            if now - _last_logged.get(ident, -RAISE_LOG_INTERVAL_S) >= RAISE_LOG_INTERVAL_S:
                _last_logged[ident] = now
                log.exception("outcome subscriber %r failed; outcome skipped for it", subscriber)


def subscribers() -> tuple[Subscriber, ...]:
    """The subscribers registered now (for tests and diagnostics)."""
    return _subscribers

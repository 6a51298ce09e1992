"""`Outcome`: what the cache did for one request, published once where it became final,
for whoever counts or samples it (the plugin server's metrics, the analytics events).

The handler publishes one `Outcome` per request that the plugin saw, at the point where the
answer is decided: in ``access`` for a hit, a bypass or an answer the plugin made itself; in
``response`` for a proxied response (stored or not) and a write; in ``log`` for a request
whose ``response`` phase never ran (its upstream could not be reached, or a later plugin
ended it). `Seen` gathers a request's facts as a phase learns them and publishes at most
once. Subscribers run synchronously in the publishing event, in registration
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
from typing import TYPE_CHECKING, Literal, NamedTuple

if TYPE_CHECKING:
    from kong_plugin.config import PluginConfig

log = logging.getLogger("strata.plugin")

#: Seconds between two log lines about the same raising subscriber.
RAISE_LOG_INTERVAL_S = 60.0

Phase = Literal["access", "response", "log"]


class Outcome(NamedTuple):
    """One request's cache outcome (immutable; a `NamedTuple` rather than a frozen
    dataclass because it is built on every request: 0.25 µs instead of 1.5 µs).

    `result`: the ``X-Cache-Status`` word the plugin decided (``Hit``, ``Miss``,
    ``Refresh``, ``Stale``, ``Bypass``; the word is decided even when the route does not
    show the header), or ``""`` when it decided none (a request whose ``response`` phase
    never ran, an access phase that failed). The 504 of ``only-if-cached`` is ``Miss``, that
    of an unreachable origin ``Refresh``, as their headers say. `detail`: why, in the words
    of the ``Cache-Status`` ``detail`` parameter (a bypass reason such as ``cookie``,
    ``method`` or ``sidecar-unavailable``; for a proxied response ``stored`` or why not:
    ``store-failed``, ``too-large``, ``private``...; a hit's ``stale-while-revalidate``;
    the plugin's own ``config``, ``error``, ``only-if-cached``, ``origin-unreachable``,
    ``upstream-unreachable``, ``no-response-phase``; ``""`` none). `status`: the HTTP
    status the client got, 0 when the plugin does not know it at the point of publishing (a
    bypass decided in ``access``, a request finished in ``log``). `tier`: the tier that
    answered a hit from the ``access`` phase's lookup (``near`` for the worker's
    near-cache; ``""`` none or unknown, e.g. a stale-if-error answer in ``response``).
    `body_bytes`: the body bytes sent for an answer from a stored entry, or the body's
    bytes of a proxied response that was read to be stored (-1 unknown). `key`: the cache
    key (``""`` none; subscribers hash it before it leaves the process). `started`: epoch
    seconds when the plugin's ``access`` phase began (for outcomes published in
    ``response`` and ``log``, when it built the request's state, a few PDK calls later);
    `elapsed_s`: from then to publishing, on the plugin's clock (not Kong's request
    latency: Kong's own work before ``access`` and after the last phase is not in it).
    `config`: the route's parsed configuration (None when it was rejected). `store`: what
    became of storing a proxied or revalidated response, one of `STORE_OUTCOMES`; ``""``
    when none was considered (a hit, a bypass, a write).

    Not guaranteed: `consumer_id` outside ``access`` -- the consumer is not carried to the
    later phases, so outcomes published in ``response`` and ``log`` have ``""``.
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
    config: PluginConfig | None = None
    store: str = ""


#: `Outcome.store` values.
STORE_OUTCOMES = (
    "stored",
    "store-failed",
    "store-not-admitted",
    "too-large",
    "expired",
    "not-storable",
)
#: `kong_plugin.sidecar_jobs.store_now`'s and `kong_plugin.decide.plan_store`'s reasons, as
#: store outcomes (any other reason is ``not-storable``).
_STORE_OF_DETAIL = {
    "": "stored",
    "store-failed": "store-failed",
    "store-not-admitted": "store-not-admitted",
    "store-too-large": "too-large",
    "too-large": "too-large",
    "store-expired": "expired",
}


def store_outcome(tried: bool, why_not: str | None) -> str:
    """The `Outcome.store` of a response: `tried` (a Store call was made), `why_not` the
    reason it was not stored (``""``/None: stored, when `tried`)."""
    if not tried:
        return "too-large" if why_not == "too-large" else "not-storable"
    return _STORE_OF_DETAIL.get(why_not or "", "store-failed")


def detail_of(member: str) -> str:
    """The ``detail`` parameter of a ``Cache-Status`` member (``""`` none), unquoted."""
    _, found, value = member.rpartition("; detail=")
    if not found:
        return ""
    return value[1:-1] if value.startswith('"') and value.endswith('"') else value


class Seen:
    """One request as one phase of the handler knows it, until it publishes its outcome.

    Fields are set as the phase learns them; `publish` builds the `Outcome` and hands it to
    the subscribers, once (a second call does nothing). Not thread-safe: one per event."""

    __slots__ = (
        "clock",
        "config",
        "consumer_id",
        "done",
        "key",
        "method",
        "phase",
        "route_id",
        "started",
    )

    def __init__(
        self,
        phase: Phase,
        started: float,
        clock: Callable[[], float],
        config: PluginConfig | None,
        route_id: str = "",
        method: str = "",
        key: str = "",
        consumer_id: str = "",
    ) -> None:
        self.phase: Phase = phase
        self.started = started
        self.clock = clock
        self.config = config
        self.route_id = route_id
        self.method = method
        self.key = key
        self.consumer_id = consumer_id
        self.done = False

    def publish(
        self,
        result: str,
        detail: str,
        *,
        status: int = 0,
        tier: str = "",
        body_bytes: int = -1,
        store: str = "",
    ) -> None:
        """Publish this request's outcome (once; see `Outcome` for the fields)."""
        if self.done:
            return
        self.done = True
        if not _subscribers:
            return
        publish(
            Outcome(
                self.phase,
                result,
                detail,
                self.method,
                self.route_id,
                self.consumer_id,
                status,
                tier,
                body_bytes,
                self.key,
                self.started,
                self.clock() - self.started,
                self.config,
                store,
            )
        )


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

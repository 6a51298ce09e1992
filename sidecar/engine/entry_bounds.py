"""What a stored entry may claim about time, brought within this sidecar's bounds.

A client says when an entry was stored (`stored_at_ms`, back-dated by the response's age)
and how long it lives (TTL, stale windows, storage TTL). Two claims would let an entry
outlive what the operator allows, so they are clamped rather than refused (the entry is
still useful, and a refusal would be invisible to the user: the plugin reports ``stored``):

* ``stored_at_ms`` in the future becomes the sidecar's now: an entry cannot be younger than
  new, and a future stored_at would push its expiry (and the sweep) beyond any TTL cap.
  A client on the same host shares the sidecar's clock, so a claim ahead of it comes from
  a clock step or a bug; only claims more than `REPORT_SKEW_MS` ahead are reported.
* Lifetime: nothing lives longer than `Limits.max_ttl_ms` after it was stored. The TTL is
  capped at it, the stale windows at what is left of it after the TTL, the storage TTL at
  it. (A TTL within the cap and a stale window beyond what is left loses the excess.)

Each clamp is counted per field (`Observer.clamped`: `strata_clamped_total{field}`) and
logged at WARNING, at most once per `LOG_EVERY_S` seconds with how many were not logged.
`stored_at_ms` 0 means "now" and is not a clamp. Pure but for the reporter; not
thread-safe (one event loop). Not guaranteed: that entries already in a shared tier
(written by another build or before the cap was lowered) obey the cap; they expire as
stored.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from sidecar.core.clock import Clock
from sidecar.core.limits import Limits
from sidecar.core.model import CachedResponse
from sidecar.core.observer import Observer

log = logging.getLogger("strata.sidecar.entry_bounds")

#: A stored_at ahead of the sidecar's clock by at most this is clamped without a report.
REPORT_SKEW_MS = 1000
LOG_EVERY_S = 10.0


def bound_entry(
    entry: CachedResponse, limits: Limits, now_ms: int
) -> tuple[CachedResponse, tuple[str, ...]]:
    """`entry` with its stored_at and durations within bounds (see the module doc), and
    the names of the fields that were clamped and should be reported."""
    clamped: list[str] = []
    stored_at = entry.stored_at_ms
    if stored_at == 0:
        stored_at = now_ms
    elif stored_at > now_ms:
        if stored_at - now_ms > REPORT_SKEW_MS:
            clamped.append("stored_at_ms")
        stored_at = now_ms
    cap = limits.max_ttl_ms
    ttl = entry.ttl_ms
    if ttl > cap:
        ttl = cap
        clamped.append("ttl_ms")
    swr, sie, storage = (
        entry.stale_while_revalidate_ms,
        entry.stale_if_error_ms,
        entry.storage_ttl_ms,
    )
    if swr > cap - ttl:
        swr = cap - ttl
        clamped.append("stale_while_revalidate_ms")
    if sie > cap - ttl:
        sie = cap - ttl
        clamped.append("stale_if_error_ms")
    if storage > cap:
        storage = cap
        clamped.append("storage_ttl_ms")
    if (stored_at, ttl, swr, sie, storage) == (
        entry.stored_at_ms,
        entry.ttl_ms,
        entry.stale_while_revalidate_ms,
        entry.stale_if_error_ms,
        entry.storage_ttl_ms,
    ):
        return entry, ()
    bounded = replace(
        entry,
        stored_at_ms=stored_at,
        ttl_ms=ttl,
        stale_while_revalidate_ms=swr,
        stale_if_error_ms=sie,
        storage_ttl_ms=storage,
    )
    return bounded, tuple(clamped)


class ClampReporter:
    """Counts clamps through the observer and logs them, at most once per `log_every_s`."""

    def __init__(self, clock: Clock, observer: Observer, log_every_s: float = LOG_EVERY_S):
        self._clock = clock
        self._observer = observer
        self._log_every = log_every_s
        self._last_log = float("-inf")
        self._unlogged = 0

    def report(self, fields: tuple[str, ...], limits: Limits) -> None:
        """Count each clamped field; log (rate-limited) what was clamped."""
        for name in fields:
            self._observer.clamped(name)
        self._unlogged += 1
        now = self._clock.monotonic()
        if now - self._last_log < self._log_every:
            return
        self._last_log = now
        log.warning(
            "stored entry clamped: %s (a stored_at ahead of this sidecar's clock becomes "
            "now; nothing lives longer than max_ttl_seconds = %d s)",
            ", ".join(fields),
            limits.max_ttl_ms // 1000,
            extra={
                "event.action": "entry_clamped",
                "strata.fields": list(fields),
                "strata.count": self._unlogged,
            },
        )
        self._unlogged = 0

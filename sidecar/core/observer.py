"""The seam between the engine and its observers (metrics, logs).

The engine and the tiers report events here; an observer must be cheap, must not raise and
must not call back into the engine. Labels are small closed sets (outcome, tier, cause,
reason) - never a cache key.
"""

from __future__ import annotations

from typing import Protocol

from sidecar.core.model import Written


class Observer(Protocol):
    def lookup(self, outcome: str, tier: str) -> None:
        """A lookup ended: outcome hit/stale/miss; tier that answered ('' on a miss)."""

    def store(self, status: str) -> None:
        """A store ended with StoreStatus value `status`."""

    def evicted(self, tier: str, cause: str, count: int) -> None:
        """`count` entries left `tier` for `cause` (size, rejected, expired, ...)."""

    def rejected(self, operation: str, reason: str) -> None:
        """A request was refused: invalid (INVALID_ARGUMENT) or over a limit of the gRPC
        surface (`sidecar.rpc.bounds`)."""

    def tier_error(self, tier: str, operation: str) -> None:
        """A tier failed an operation; the engine carried on without it."""

    def tier_skipped(self, tier: str, reason: str) -> None:
        """A call to `tier` was not made at all, for `reason` (`TierSkippedError.reason`:
        circuit_open, its circuit breaker is open or probing; deadline, nothing left of the
        caller's deadline; ...). Not an error: no I/O happened."""

    def coalesced(self, result: str) -> None:
        """A lookup waited on another caller's fill: result filled/timeout."""

    def invalidated(self, kind: str, dropped: int) -> None:
        """An invalidation by key/prefix/tag dropped `dropped` entries."""

    def circuit(self, tier: str, state: str) -> None:
        """`tier`'s circuit breaker is now in `state` (closed, open, half_open)."""

    def placement_skipped(self, tier: str, reason: str) -> None:
        """Placement left out `tier`, which it would otherwise have picked, for `reason`
        (budget: its sampled usage is at or above its byte budget)."""

    def promoted(self, tier: str, result: str, logical_bytes: int = 0) -> None:
        """A memory hit turned its key hot and its entry was written to `tier` (a shared
        RAM tier): result is the tier's answer (stored, not_admitted, too_large), failed,
        dropped (too many promotions in flight; tier is ``shared``), purged (a key or
        prefix purge came first: not written) or undone (one came while it was written:
        deleted again); `logical_bytes`: the entry's (`logical_bytes`), with ``stored``."""

    def deferred_purges(self, tier: str, event: str, count: int) -> None:
        """Purges that could not reach `tier` (a shared tier, or ``redis_generations``):
        event kept (held for replay), replayed (applied once it answered again) or
        overflow (too many held: replaced by a namespace-wide purge)."""

    def pending_purges(self, tier: str, count: int) -> None:
        """Purges held for `tier` right now (a gauge)."""

    def clamped(self, field: str) -> None:
        """A stored entry's `field` was brought within bounds (`sidecar.engine.entry_bounds`): a
        stored_at ahead of the clock, or a duration beyond max_ttl_seconds."""

    def event_received(self, source: str) -> None:
        """An invalidation event was read from the topic and parsed: source own (this node
        published it) or remote."""

    def event_applied(self, source: str, lag_s: float | None) -> None:
        """An invalidation event was applied: source local (submitted here), own (this
        node's event read back, e.g. after a restart) or remote; `lag_s`: from its ``ts``
        to now (None without ``ts``)."""

    def event_rejected(self, reason: str) -> None:
        """An invalidation event (or an item of one) was refused, for `reason` (an
        `EventError` reason, or engine_refused: an item over this node's limits)."""

    def event_replay_skipped(self, source: str) -> None:
        """An invalidation event already applied here was read again and skipped."""

    def served(self, outcome: str, tier: str, body_bytes: int) -> None:
        """A lookup answered `outcome` (hit, stale) from `tier` with a body of
        `body_bytes` (called on the hit path: an integer add, nothing more)."""

    def written(self, tier: str, written: Written) -> None:
        """A write stored an entry in `tier`; `written`: its bytes by stage of saving."""

    def admission_refused(self, tier: str, logical_bytes: int) -> None:
        """`tier`'s admission refused an entry of `logical_bytes` (`logical_bytes`):
        the memory tier's W-TinyLFU filter, or placement keeping a cold key out of a
        shared RAM tier."""


class NullObserver:
    """Observes nothing (the default, and for tests)."""

    def lookup(self, outcome: str, tier: str) -> None:
        pass

    def store(self, status: str) -> None:
        pass

    def evicted(self, tier: str, cause: str, count: int) -> None:
        pass

    def rejected(self, operation: str, reason: str) -> None:
        pass

    def tier_error(self, tier: str, operation: str) -> None:
        pass

    def tier_skipped(self, tier: str, reason: str) -> None:
        pass

    def coalesced(self, result: str) -> None:
        pass

    def invalidated(self, kind: str, dropped: int) -> None:
        pass

    def circuit(self, tier: str, state: str) -> None:
        pass

    def placement_skipped(self, tier: str, reason: str) -> None:
        pass

    def promoted(self, tier: str, result: str, logical_bytes: int = 0) -> None:
        pass

    def deferred_purges(self, tier: str, event: str, count: int) -> None:
        pass

    def pending_purges(self, tier: str, count: int) -> None:
        pass

    def clamped(self, field: str) -> None:
        pass

    def event_received(self, source: str) -> None:
        pass

    def event_applied(self, source: str, lag_s: float | None) -> None:
        pass

    def event_rejected(self, reason: str) -> None:
        pass

    def event_replay_skipped(self, source: str) -> None:
        pass

    def served(self, outcome: str, tier: str, body_bytes: int) -> None:
        pass

    def written(self, tier: str, written: Written) -> None:
        pass

    def admission_refused(self, tier: str, logical_bytes: int) -> None:
        pass


class RecordingObserver(NullObserver):
    """Keeps every event as a tuple; for tests."""

    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []

    def lookup(self, outcome: str, tier: str) -> None:
        self.events.append(("lookup", outcome, tier))

    def store(self, status: str) -> None:
        self.events.append(("store", status))

    def evicted(self, tier: str, cause: str, count: int) -> None:
        self.events.append(("evicted", tier, cause, count))

    def rejected(self, operation: str, reason: str) -> None:
        self.events.append(("rejected", operation, reason))

    def tier_error(self, tier: str, operation: str) -> None:
        self.events.append(("tier_error", tier, operation))

    def tier_skipped(self, tier: str, reason: str) -> None:
        self.events.append(("tier_skipped", tier, reason))

    def coalesced(self, result: str) -> None:
        self.events.append(("coalesced", result))

    def invalidated(self, kind: str, dropped: int) -> None:
        self.events.append(("invalidated", kind, dropped))

    def circuit(self, tier: str, state: str) -> None:
        self.events.append(("circuit", tier, state))

    def placement_skipped(self, tier: str, reason: str) -> None:
        self.events.append(("placement_skipped", tier, reason))

    def promoted(self, tier: str, result: str, logical_bytes: int = 0) -> None:
        self.events.append(("promoted", tier, result))

    def deferred_purges(self, tier: str, event: str, count: int) -> None:
        self.events.append(("deferred_purges", tier, event, count))

    def pending_purges(self, tier: str, count: int) -> None:
        self.events.append(("pending_purges", tier, count))

    def clamped(self, field: str) -> None:
        self.events.append(("clamped", field))

    def event_received(self, source: str) -> None:
        self.events.append(("event_received", source))

    def event_applied(self, source: str, lag_s: float | None) -> None:
        self.events.append(("event_applied", source, lag_s))

    def event_rejected(self, reason: str) -> None:
        self.events.append(("event_rejected", reason))

    def event_replay_skipped(self, source: str) -> None:
        self.events.append(("event_replay_skipped", source))

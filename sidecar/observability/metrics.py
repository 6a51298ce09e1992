"""Prometheus metrics for the sidecar, all prefixed `strata_`, base units, `_total` on
counters. Labels are closed sets (outcome, tier, cause, reason, operation), never keys.

Occupancy (entries, bytes per tier) is read from the engine at scrape time by a collector,
so the hot path only increments counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sidecar.core.model import TierSnapshot, Written
from sidecar.observability.cost_metrics import CostMetrics
from sidecar.observability.event_metrics import EventMetrics

#: Values of `strata_tier_circuit_state` for the states a circuit breaker reports.
CIRCUIT_STATE_VALUES = {"closed": 0, "open": 1, "half_open": 2}


class PrometheusObserver:
    """An `Observer` that counts into a registry of its own (one per sidecar)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._lookups = Counter(
            "strata_lookups_total",
            "Lookups by outcome (hit, stale, miss) and the tier that answered",
            ["outcome", "tier"],
            registry=registry,
        )
        self._stores = Counter(
            "strata_stores_total", "Stores by result", ["result"], registry=registry
        )
        self._evictions = Counter(
            "strata_evictions_total",
            "Entries that left a tier, by cause (size, rejected, expired, explicit, replaced)",
            ["tier", "cause"],
            registry=registry,
        )
        self._rejected = Counter(
            "strata_rejected_requests_total",
            "Requests refused, by operation and reason: invalid (INVALID_ARGUMENT) or over a "
            "limit of the gRPC surface (RESOURCE_EXHAUSTED: batch_too_large, too_many_streams, "
            "reply_budget, ...; too_many_waiters: answered without waiting)",
            ["operation", "reason"],
            registry=registry,
        )
        self._tier_errors = Counter(
            "strata_tier_errors_total",
            "Tier operations that were tried and failed (error, timeout, or cancelled while "
            "in the tier); the engine carried on without the tier",
            ["tier", "operation"],
            registry=registry,
        )
        self._tier_skipped = Counter(
            "strata_tier_skipped_total",
            "Tier calls not made at all, by reason (circuit_open: the tier's circuit breaker "
            "is open; deadline: nothing was left of the caller's deadline; ...)",
            ["tier", "reason"],
            registry=registry,
        )
        self._coalesced = Counter(
            "strata_coalesced_lookups_total",
            "Lookups that waited for another caller's fill, by result (filled, timeout)",
            ["result"],
            registry=registry,
        )
        self._invalidated = Counter(
            "strata_invalidated_entries_total",
            "Entries dropped by invalidations, by kind (key, prefix, tag, route)",
            ["kind"],
            registry=registry,
        )
        self._circuit_state = Gauge(
            "strata_tier_circuit_state",
            "Circuit breaker state of each tier: 0 closed, 1 open, 2 half-open",
            ["tier"],
            registry=registry,
        )
        self._circuit_opened = Counter(
            "strata_tier_circuit_opened_total",
            "Times a tier's circuit breaker opened (tripped, or re-opened by a failed probe)",
            ["tier"],
            registry=registry,
        )
        self._placement_skipped = Counter(
            "strata_placement_skipped_total",
            "Tiers placement left out of a store or backfill it would have picked, by reason "
            "(budget: sampled usage at or above the tier's byte budget)",
            ["tier", "reason"],
            registry=registry,
        )
        self._promoted = Counter(
            "strata_promotions_total",
            "Entries written to a shared RAM tier because a memory hit turned their key hot "
            "(result: the tier's answer, failed, or dropped when too many were in flight)",
            ["tier", "result"],
            registry=registry,
        )
        self._promoted_bytes = Counter(
            "strata_promoted_bytes_total",
            "Logical bytes (key, header names and values, raw body) of the entries promotions "
            "stored in a shared RAM tier: bytes kept out of it at their store, which went in after",
            ["tier"],
            registry=registry,
        )
        self._deferred_purges = Counter(
            "strata_deferred_purges_total",
            "Purges that could not reach a shared tier (or the Redis generations), by event: "
            "kept for replay, replayed once it answered, overflow (too many kept: replaced "
            "by a namespace-wide purge)",
            ["tier", "event"],
            registry=registry,
        )
        self._pending_purges = Gauge(
            "strata_pending_purges",
            "Purges held for a tier that could not be reached, waiting for replay",
            ["tier"],
            registry=registry,
        )
        self._clamped = Counter(
            "strata_clamped_total",
            "Stored entries' fields brought within bounds, by field (stored_at_ms ahead of "
            "the clock; ttl_ms, stale windows or storage_ttl_ms beyond max_ttl_seconds)",
            ["field"],
            registry=registry,
        )
        self._admin_requests = Counter(
            "strata_admin_requests_total",
            "Admin API requests by route (proxy_cache, proxy_cache_key, purge, unmatched; none: "
            "refused before routing) and result (ok, not_found, unauthorized, bad_request, "
            "too_large, timeout, method_not_allowed, busy, error)",
            ["route", "result"],
            registry=registry,
        )
        self._lookup_children: dict[tuple[str, str], Callable[[], None]] = {}
        self._events = EventMetrics(registry)
        self._cost = CostMetrics(registry)
        self.served = self._cost.served  # the hit path: no extra call frame

    def lookup(self, outcome: str, tier: str) -> None:
        inc = self._lookup_children.get((outcome, tier))
        if inc is None:
            inc = self._lookups.labels(outcome, tier).inc
            self._lookup_children[(outcome, tier)] = inc
        inc()

    def store(self, status: str) -> None:
        self._stores.labels(status).inc()

    def evicted(self, tier: str, cause: str, count: int) -> None:
        self._evictions.labels(tier, cause).inc(count)

    def rejected(self, operation: str, reason: str) -> None:
        self._rejected.labels(operation, reason).inc()

    def tier_error(self, tier: str, operation: str) -> None:
        self._tier_errors.labels(tier, operation).inc()

    def tier_skipped(self, tier: str, reason: str) -> None:
        self._tier_skipped.labels(tier, reason).inc()

    def coalesced(self, result: str) -> None:
        self._coalesced.labels(result).inc()

    def invalidated(self, kind: str, dropped: int) -> None:
        self._invalidated.labels(kind).inc(dropped)

    def placement_skipped(self, tier: str, reason: str) -> None:
        self._placement_skipped.labels(tier, reason).inc()

    def promoted(self, tier: str, result: str, logical_bytes: int = 0) -> None:
        self._promoted.labels(tier, result).inc()
        if logical_bytes:
            self._promoted_bytes.labels(tier).inc(logical_bytes)

    def deferred_purges(self, tier: str, event: str, count: int) -> None:
        self._deferred_purges.labels(tier, event).inc(count)

    def pending_purges(self, tier: str, count: int) -> None:
        self._pending_purges.labels(tier).set(count)

    def clamped(self, field: str) -> None:
        self._clamped.labels(field).inc()

    def admin_request(self, route: str, result: str) -> None:
        self._admin_requests.labels(route, result).inc()

    def written(self, tier: str, written: Written) -> None:
        self._cost.written(tier, written)

    def admission_refused(self, tier: str, logical_bytes: int) -> None:
        self._cost.admission_refused(tier, logical_bytes)

    def event_received(self, source: str) -> None:
        self._events.received(source)

    def event_applied(self, source: str, lag_s: float | None) -> None:
        self._events.applied(source, lag_s)

    def event_rejected(self, reason: str) -> None:
        self._events.rejected(reason)

    def event_replay_skipped(self, source: str) -> None:
        self._events.replay_skipped(source)

    def circuit(self, tier: str, state: str) -> None:
        """Set the state gauge; count each move into open. Any report creates both series
        (a breaker reports 'closed' when built, so they exist from start-up)."""
        value = CIRCUIT_STATE_VALUES.get(state)
        if value is None:
            return
        self._circuit_state.labels(tier).set(value)
        opened = self._circuit_opened.labels(tier)
        if state == "open":
            opened.inc()


class TierCollector(Collector):
    """Per-tier occupancy gauges, read from `snapshot()` at scrape time."""

    def __init__(self, snapshot: Callable[[], list[TierSnapshot]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        entries = GaugeMetricFamily(
            "strata_tier_entries", "Entries held by each tier", labels=["tier"]
        )
        used = GaugeMetricFamily("strata_tier_bytes", "Bytes held by each tier", labels=["tier"])
        budget = GaugeMetricFamily(
            "strata_tier_max_bytes", "Byte budget of each tier", labels=["tier"]
        )
        logical = GaugeMetricFamily(
            "strata_tier_logical_bytes",
            "What each tier's entries would take stored the naive way (key, header names and "
            "values, raw body; one copy per key); only tiers that know it (memory)",
            labels=["tier"],
        )
        body = GaugeMetricFamily(
            "strata_tier_body_bytes",
            "Bodies each tier holds now, by stage: raw (every key's), distinct (each distinct "
            "body once: after deduplication), stored (after compression); only tiers that "
            "know it (memory)",
            labels=["tier", "stage"],
        )
        for t in self._snapshot():
            entries.add_metric([t.name], t.entries)
            used.add_metric([t.name], t.bytes)
            budget.add_metric([t.name], t.max_bytes)
            if (f := t.footprint) is not None:
                logical.add_metric([t.name], f.logical)
                body.add_metric([t.name, "raw"], f.body)
                body.add_metric([t.name, "distinct"], f.body_distinct)
                body.add_metric([t.name, "stored"], f.body_stored)
        yield entries
        yield used
        yield budget
        yield logical
        yield body

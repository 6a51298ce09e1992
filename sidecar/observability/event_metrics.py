"""Prometheus metrics of invalidation events (``strata_invalidation_*``).

`EventMetrics` counts what the invalidation service reports through the `Observer`
(received, applied, rejected, replays skipped, apply lag); `BusCollector` reads the Kafka
bus's counters at scrape time (published, sent, outbox, dropped, consumer ready), so the
bus needs no observer of its own. Labels are closed sets: source (local, own, remote) and
reason (the `sidecar.events.Reason` values, engine_refused).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["LAG_BUCKETS", "BusCollector", "BusCounters", "EventMetrics"]

#: Buckets of the apply lag, in seconds: loopback delivery is milliseconds, a broker
#: outage or a clock apart makes seconds to minutes.
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class EventMetrics:
    """The event counters of one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._received = Counter(
            "strata_invalidation_events_received_total",
            "Invalidation events read from the topic and parsed, by source (own: published "
            "by this node, remote: by anyone else)",
            ["source"],
            registry=registry,
        )
        self._applied = Counter(
            "strata_invalidation_events_applied_total",
            "Invalidation events applied, by source (local: submitted on this node, own: this "
            "node's event read back without a record of it, e.g. after a restart, remote)",
            ["source"],
            registry=registry,
        )
        self._rejected = Counter(
            "strata_invalidation_events_rejected_total",
            "Invalidation events refused (skipped, never retried), by reason; engine_refused "
            "counts an item of an applied event that this node's limits refuse",
            ["reason"],
            registry=registry,
        )
        self._replays = Counter(
            "strata_invalidation_replays_skipped_total",
            "Invalidation events read again after this node applied them (its own events "
            "coming back, redeliveries) and skipped, by source",
            ["source"],
            registry=registry,
        )
        self._lag = Histogram(
            "strata_invalidation_apply_lag_seconds",
            "From an event's ts (the producer's clock) to its apply here, for events with a "
            "ts, by source",
            ["source"],
            buckets=LAG_BUCKETS,
            registry=registry,
        )

    def received(self, source: str) -> None:
        self._received.labels(source).inc()

    def applied(self, source: str, lag_s: float | None) -> None:
        self._applied.labels(source).inc()
        if lag_s is not None:
            self._lag.labels(source).observe(max(0.0, lag_s))

    def rejected(self, reason: str) -> None:
        self._rejected.labels(reason).inc()

    def replay_skipped(self, source: str) -> None:
        self._replays.labels(source).inc()


class BusCounters(Protocol):
    """What `BusCollector` reads (`sidecar.cluster.kafka_bus.BusStats` has it)."""

    @property
    def queued(self) -> int: ...
    @property
    def queued_bytes(self) -> int: ...
    @property
    def published(self) -> int: ...
    @property
    def sent(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    @property
    def send_failures(self) -> int: ...
    @property
    def apply_failures(self) -> int: ...
    @property
    def dead_lettered(self) -> int: ...
    @property
    def assigned_partitions(self) -> int: ...


class BusCollector(Collector):
    """The Kafka bus's counters and gauges, read from `stats()` at scrape time."""

    def __init__(self, stats: Callable[[], BusCounters]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self._stats()
        counters = (
            ("published", "Invalidation events queued for publishing", s.published),
            ("sent", "Invalidation events the broker acknowledged", s.sent),
            (
                "outbox_dropped",
                "Invalidation events dropped unsent (outbox full, or closing with the broker "
                "unreached); each is logged with the event",
                s.dropped,
            ),
            (
                "send_failures",
                "Batches the broker did not take (kept and retried)",
                s.send_failures,
            ),
            (
                "apply_failures",
                "Attempts to apply a consumed event that failed and were retried",
                s.apply_failures,
            ),
            ("dead_lettered", "Refused events copied to the dead-letter topic", s.dead_lettered),
        )
        for name, text, value in counters:
            family = CounterMetricFamily(f"strata_invalidation_{name}", text)
            family.add_metric([], value)
            yield family
        yield GaugeMetricFamily(
            "strata_invalidation_outbox_events", "Invalidation events waiting to be sent", s.queued
        )
        yield GaugeMetricFamily(
            "strata_invalidation_outbox_bytes",
            "Bytes of invalidation events waiting to be sent",
            s.queued_bytes,
        )
        yield GaugeMetricFamily(
            "strata_invalidation_consumer_ready",
            "1 when this node reads every partition of the invalidation topic, else 0",
            1 if s.assigned_partitions > 0 else 0,
        )

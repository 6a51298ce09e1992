"""Prometheus metrics of the analytics events (``strata_analytics_*``), read from
`Analytics.stats` at scrape time (nothing is counted twice, the request path counts
nothing). The one label, ``reason``, is the closed set
`sidecar.analytics.service.DROP_REASONS`."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sidecar.analytics.service import AnalyticsStats

__all__ = ["AnalyticsCollector"]


class AnalyticsCollector(Collector):
    """The analytics counters and queue gauge of one sidecar."""

    def __init__(self, stats: Callable[[], AnalyticsStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self._stats()
        yield CounterMetricFamily(
            "strata_analytics_events_received",
            "Analytics events received from plugins (ReportAccess), valid or not",
            s.received,
        )
        yield CounterMetricFamily(
            "strata_analytics_events_published",
            "Analytics events the broker acknowledged on the analytics topic",
            s.published,
        )
        dropped = CounterMetricFamily(
            "strata_analytics_events_dropped",
            "Analytics events not published, by reason: invalid (refused by the checks), "
            "disabled (analytics off here), queue-full (the producer queue was full), "
            "broker-unavailable (not delivered in time, or left at close)",
            labels=["reason"],
        )
        for reason, count in sorted(s.dropped.items()):
            dropped.add_metric([reason], count)
        yield dropped
        yield GaugeMetricFamily(
            "strata_analytics_queue_events",
            "Analytics events held for the broker now (queued and in flight)",
            s.queued,
        )

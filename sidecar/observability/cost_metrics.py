"""The metrics `strata cost` computes its report from (`sidecar.cost`): what hits saved the
origin, what each tier's writes cost and saved, what admission kept out, and since when.

* ``strata_served_body_bytes_total{outcome,tier}``: body bytes of the entries lookups were
  answered with (hit, stale): a hit's body is origin egress avoided. Counted on the hit
  path as one integer add into a plain dict, turned into a counter family at scrape time.
* ``strata_tier_written_bytes_total{tier,stage}``: bytes the writes put into each tier, by
  stage of saving (`sidecar.core.model.Written`): ``logical`` (the naive copy: key, header
  names and values, raw body), ``body`` (raw bodies), ``body_new`` (raw bodies the tier did
  not hold yet: after deduplication), ``body_stored`` (those, as stored: after
  compression), ``stored`` (everything the writes added).
* ``strata_admission_refused_bytes_total{tier}``: logical bytes of entries a tier's
  admission refused (the memory tier's W-TinyLFU filter; placement keeping a cold key out
  of a shared RAM tier).
* ``process_start_time_seconds`` and the other ``process_*`` families of
  `prometheus_client.ProcessCollector` (Linux): the window the counters cover.

What these do not guarantee: near-cache hits in the plugin servers never reach the sidecar
and are not counted here (the plugin server counts them: ``strata_plugin_hits_total``); a
body served as a range counts whole; bytes written count every write, replacements and
backfills included, not what is held now (for the memory tier that is
`TierSnapshot.footprint`, exported as ``strata_tier_logical_bytes`` and
``strata_tier_body_bytes`` by `sidecar.observability.metrics.TierCollector`).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, ProcessCollector
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from sidecar.core.model import Written

__all__ = ["WRITTEN_STAGES", "CostMetrics"]

#: The ``stage`` label values of ``strata_tier_written_bytes_total``, in `Written`'s order.
WRITTEN_STAGES = ("logical", "body", "body_new", "body_stored", "stored")


class _ServedCollector(Collector):
    """``strata_served_body_bytes_total`` from a dict the event loop adds to."""

    def __init__(self, served: dict[tuple[str, str], int]) -> None:
        self._served = served

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "strata_served_body_bytes",
            "Body bytes of the entries lookups were answered with, by outcome (hit, stale) "
            "and tier: a hit's body is origin egress avoided (near-cache hits not included)",
            labels=["outcome", "tier"],
        )
        for (outcome, tier), value in sorted(self._served.copy().items()):
            family.add_metric([outcome, tier], value)
        yield family


class CostMetrics:
    """The cost report's families in `registry` (one per sidecar)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._served: dict[tuple[str, str], int] = {}
        registry.register(_ServedCollector(self._served))
        self._written = Counter(
            "strata_tier_written_bytes_total",
            "Bytes writes put into each tier, by stage of saving: logical (key, headers and "
            "raw body: the naive copy), body (raw bodies), body_new (after deduplication), "
            "body_stored (after compression), stored (everything the writes added)",
            ["tier", "stage"],
            registry=registry,
        )
        self._refused = Counter(
            "strata_admission_refused_bytes_total",
            "Logical bytes of entries a tier's admission refused (memory: W-TinyLFU; shared "
            "RAM: placement keeping a cold key out)",
            ["tier"],
            registry=registry,
        )
        ProcessCollector(registry=registry)

    def served(self, outcome: str, tier: str, body_bytes: int) -> None:
        key = (outcome, tier)
        served = self._served
        served[key] = served.get(key, 0) + body_bytes

    def written(self, tier: str, written: Written) -> None:
        values = (
            written.logical,
            written.body,
            written.body_new,
            written.body_stored,
            written.stored,
        )
        for stage, value in zip(WRITTEN_STAGES, values, strict=True):
            self._written.labels(tier, stage).inc(value)

    def admission_refused(self, tier: str, logical_bytes: int) -> None:
        self._refused.labels(tier).inc(logical_bytes)

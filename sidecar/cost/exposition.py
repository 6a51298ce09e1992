"""One /metrics page (Prometheus text format) as a `NodeReading` for the cost model. Pure.

A page is a sidecar's when it has ``strata_tier_bytes``, a plugin server's when it has
``strata_plugin_requests_total``; anything else is refused (`SourceError`). A sidecar's page
must carry every family the model reads (`SIDECAR_FAMILIES`): a sidecar older than the cost
metrics is named as such (``strata_promoted_bytes_total``, newer still, is optional: without
it admission's refusals cannot be netted, and the report says so). A page is refused, naming
the family, when a family or a sample appears twice (which one would count is a guess) or
when a sample the report uses is not a number from 0 to 2^63 (`sidecar.cost.errors.checked`).

Counters are read over a window: the difference of two pages, series by series
(`reading_of(..., before=...)`). A series whose value went down was reset by a restart and
counts from 0, as Prometheus' ``increase`` does; a series new on the second page counts
whole. When ``process_start_time_seconds`` changed between the pages the process restarted:
the caller reads that page as if from its start (`restarted`); counts before the restart are
lost. From one page, counters are taken since the process started.

Not guaranteed: that a reset is seen when the new process counted past the old value before
the second read (nothing on a plugin server's page tells; a sidecar's start time does).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from sidecar.cost.errors import SourceError, checked
from sidecar.cost.model import STAGES, MemoryFootprint, NodeReading, Stages

__all__ = [
    "SIDECAR_FAMILIES",
    "Page",
    "SourceError",
    "counter_resets",
    "parse_page",
    "reading_of",
    "restarted",
    "start_time",
]

#: Families a sidecar's page must have (counters by their family name, without _total).
SIDECAR_FAMILIES = (
    "strata_tier_bytes",
    "strata_lookups",
    "strata_served_body_bytes",
    "strata_tier_written_bytes",
    "strata_admission_refused_bytes",
    "strata_tier_logical_bytes",
    "strata_tier_body_bytes",
)
PROMOTED = "strata_promoted_bytes"
START_TIME = "process_start_time_seconds"
PLUGIN_FAMILIES = ("strata_plugin_requests", "strata_plugin_hits", "strata_plugin_near_cache_bytes")
#: Families whose every sample must pass `checked`: the ones the report reads.
USED_FAMILIES = frozenset((*SIDECAR_FAMILIES, PROMOTED, START_TIME, *PLUGIN_FAMILIES))

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Page:
    """The samples of one page by sample name, then by sorted label pairs; `kind`:
    ``sidecar`` or ``plugin``."""

    source: str
    kind: str
    families: frozenset[str]
    samples: Mapping[str, Mapping[Labels, float]]

    def values(self, name: str) -> Mapping[Labels, float]:
        return self.samples.get(name, {})

    def value(self, name: str, **labels: str) -> float:
        return sum(v for k, v in self.values(name).items() if _matches(k, labels))


def _matches(key: Labels, labels: Mapping[str, str]) -> bool:
    have = dict(key)
    return all(have.get(name) == value for name, value in labels.items())


def parse_page(text: str, source: str) -> Page:
    """The page `text` read from `source`; `SourceError` when it is not Prometheus text, not
    a Strata sidecar's or plugin server's, lacks a family the model reads, repeats a family
    or a sample, or has a sample the report uses out of range."""
    samples: dict[str, dict[Labels, float]] = {}
    families: set[str] = set()
    try:
        for family in text_string_to_metric_families(text):
            if family.name in families:
                raise SourceError(f"{source}: {family.name}: the family appears twice")
            families.add(family.name)
            for s in family.samples:
                series = samples.setdefault(s.name, {})
                key = tuple(sorted(s.labels.items()))
                if key in series:
                    raise SourceError(f"{source}: {s.name}: a sample appears twice {dict(key)}")
                if family.name in USED_FAMILIES or s.name in USED_FAMILIES:
                    checked(s.value, source, s.name)
                series[key] = s.value
    except SourceError:
        raise
    except (ValueError, TypeError, IndexError) as exc:
        raise SourceError(f"{source}: not Prometheus text format ({exc})") from None
    if "strata_tier_bytes" in families:
        missing = [f for f in SIDECAR_FAMILIES if f not in families]
        if missing:
            raise SourceError(
                f"{source}: a Strata sidecar without {', '.join(missing)} "
                "(a build older than the cost metrics?)"
            )
        kind = "sidecar"
    elif "strata_plugin_requests" in families:
        kind = "plugin"
    else:
        raise SourceError(f"{source}: not a Strata sidecar or plugin server (no strata_ families)")
    return Page(source, kind, frozenset(families), samples)


def start_time(page: Page) -> float | None:
    values = page.values(START_TIME)
    return next(iter(values.values())) if values else None


def restarted(before: Page, after: Page) -> bool:
    """Whether `after` comes from a process started after `before`'s (their
    ``process_start_time_seconds`` differ; False when either has none)."""
    then, now = start_time(before), start_time(after)
    return then is not None and now is not None and then != now


def counter_resets(before: Page, after: Page) -> list[str]:
    """The ``_total`` samples of `after` with a series lower than on `before`."""
    return sorted(
        name
        for name, series in after.samples.items()
        if name.endswith("_total")
        and any(v < before.values(name).get(k, 0.0) for k, v in series.items())
    )


def _counter(page: Page, before: Page | None, name: str, **labels: str) -> float:
    """The sum over the series of `name` matching `labels` of each one's increase since
    `before` (a series that went down counts from 0; None: its whole value)."""
    then = before.values(name) if before is not None else {}
    total = 0.0
    for key, now in page.values(name).items():
        if _matches(key, labels):
            prev = then.get(key)
            total += now - prev if prev is not None and now >= prev else now
    return total


def _by(page: Page, before: Page | None, name: str, label: str) -> dict[str, float]:
    keys = {dict(k).get(label, "") for k in page.values(name)}
    return {k: _counter(page, before, name, **{label: k}) for k in sorted(keys)}


def reading_of(page: Page, before: Page | None, window_s: float) -> NodeReading:
    """A `NodeReading` of `page`: gauges as on `page`, counters since `before` (None: since
    the process started) over `window_s` seconds."""
    if page.kind == "plugin":
        return NodeReading(
            source=page.source,
            window_s=window_s,
            sidecar=False,
            held={"near": page.value("strata_plugin_near_cache_bytes")},
            near_hits=_counter(page, before, "strata_plugin_hits_total", tier="near"),
        )
    held = {dict(k).get("tier", ""): v for k, v in page.values("strata_tier_bytes").items()}
    footprint = None
    if any(dict(k).get("tier") == "memory" for k in page.values("strata_tier_logical_bytes")):
        footprint = MemoryFootprint(
            logical=page.value("strata_tier_logical_bytes", tier="memory"),
            body=page.value("strata_tier_body_bytes", tier="memory", stage="raw"),
            body_distinct=page.value("strata_tier_body_bytes", tier="memory", stage="distinct"),
            body_stored=page.value("strata_tier_body_bytes", tier="memory", stage="stored"),
        )
    written_name = "strata_tier_written_bytes_total"
    tiers = sorted({dict(k).get("tier", "") for k in page.values(written_name)})
    written = {
        tier: Stages(*(_counter(page, before, written_name, tier=tier, stage=s) for s in STAGES))
        for tier in tiers
    }
    promoted = _by(page, before, f"{PROMOTED}_total", "tier") if PROMOTED in page.families else None
    return NodeReading(
        source=page.source,
        window_s=window_s,
        held=held,
        footprint=footprint,
        lookups=_by(page, before, "strata_lookups_total", "outcome"),
        served=_by(page, before, "strata_served_body_bytes_total", "outcome"),
        written=written,
        refused=_by(page, before, "strata_admission_refused_bytes_total", "tier"),
        promoted=promoted,
    )

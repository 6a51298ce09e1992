"""One /metrics page (Prometheus text format) as a `NodeReading` for the cost model. Pure.

A page is a sidecar's when it has ``strata_tier_bytes``, a plugin server's when it has
``strata_plugin_requests_total``; anything else is refused (`SourceError`). A sidecar's page
must carry every family the model reads (`SIDECAR_FAMILIES`): a sidecar older than the cost
metrics is named as such. Counters are read over a window: the difference of two pages
(`reading_of(..., before=...)`; a counter that went down was reset by a restart, and its
new value is the window's, as Prometheus' ``increase`` does) or, from one page, since the
process started (``process_start_time_seconds``).

Not guaranteed: that two pages come from the same process (a restart between them shows as
counter resets); a window for a plugin server read once (it exports no start time: the
caller decides, see `sidecar.cost.sources`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from sidecar.cost.model import STAGES, MemoryFootprint, NodeReading, Stages

__all__ = ["SIDECAR_FAMILIES", "Page", "SourceError", "parse_page", "reading_of", "start_time"]

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
START_TIME = "process_start_time_seconds"

Labels = tuple[tuple[str, str], ...]


class SourceError(Exception):
    """A source could not be read or is not what it should be (exit 1)."""


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
        want = tuple(sorted(labels.items()))
        return sum(v for k, v in self.values(name).items() if set(want) <= set(k))


def parse_page(text: str, source: str) -> Page:
    """The page `text` read from `source`; `SourceError` when it is not Prometheus text,
    not a Strata sidecar's or plugin server's, or lacks a family the model reads."""
    samples: dict[str, dict[Labels, float]] = {}
    families: set[str] = set()
    try:
        for family in text_string_to_metric_families(text):
            families.add(family.name)
            for s in family.samples:
                samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
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


def _counter(page: Page, before: Page | None, name: str, **labels: str) -> float:
    now = page.value(name, **labels)
    if before is None:
        return now
    then = before.value(name, **labels)
    return now - then if now >= then else now  # reset: the new process's count


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
    held = {dict(k)["tier"]: v for k, v in page.values("strata_tier_bytes").items()}
    footprint = None
    if any(dict(k).get("tier") == "memory" for k in page.values("strata_tier_logical_bytes")):
        footprint = MemoryFootprint(
            logical=page.value("strata_tier_logical_bytes", tier="memory"),
            body=page.value("strata_tier_body_bytes", tier="memory", stage="raw"),
            body_distinct=page.value("strata_tier_body_bytes", tier="memory", stage="distinct"),
            body_stored=page.value("strata_tier_body_bytes", tier="memory", stage="stored"),
        )
    written_name = "strata_tier_written_bytes_total"
    tiers = sorted({dict(k)["tier"] for k in page.values(written_name)})
    written = {
        tier: Stages(*(_counter(page, before, written_name, tier=tier, stage=s) for s in STAGES))
        for tier in tiers
    }
    return NodeReading(
        source=page.source,
        window_s=window_s,
        held=held,
        footprint=footprint,
        lookups=_by(page, before, "strata_lookups_total", "outcome"),
        served=_by(page, before, "strata_served_body_bytes_total", "outcome"),
        written=written,
        refused=_by(page, before, "strata_admission_refused_bytes_total", "tier"),
    )

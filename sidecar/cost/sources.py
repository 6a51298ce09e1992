"""Where `strata cost` reads its numbers: /metrics pages, or a Prometheus server.

* `read_pages(urls, window_s)`: each URL a sidecar's or plugin server's /metrics (``/metrics``
  is added to a URL without a path). With `window_s`, every page is read twice that many
  seconds apart and the counters are the difference, series by series; a sidecar whose
  ``process_start_time_seconds`` changed in between restarted, and its counters are taken
  since the restart (a note says counts before it are lost). Without, they are taken since
  each process started (a plugin server exports no start time, so its counters are taken
  over the longest sidecar uptime, and a note says so); an uptime under `MIN_WINDOW_S` by
  this machine's clock (also: a start time ahead of it) is refused, not extrapolated.
* `read_prometheus(url, range_s)`: the cluster from a Prometheus server's HTTP API
  (``/api/v1/query``): gauges summed over nodes for the node-local tiers and taken once
  (``max``) for the shared ones, as the dashboard's cost panels do; counters as
  ``increase(...[range])`` summed over every series.

Every fetch is bounded in total time and size and follows no redirect (`sidecar.cost.fetch`).
Every failure is a `SourceError` whose message names the URL and what is wrong (unreachable,
no answer in time, a redirect, an HTTP error, not a Strata sidecar, a family missing or
repeated, a value that is not a number from 0 to 2^63). Not guaranteed: a consistent cut
(pages and queries are read in turn); that a Prometheus server scrapes every node (what it
has is what is reported); that two URLs are two nodes (`node_key` only catches spellings of
the same URL).
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

from sidecar.cost.errors import SourceError, checked
from sidecar.cost.exposition import (
    Page,
    counter_resets,
    parse_page,
    reading_of,
    restarted,
    start_time,
)
from sidecar.cost.fetch import HTTPStatusError, get
from sidecar.cost.model import STAGES, MemoryFootprint, NodeReading, Stages

__all__ = [
    "MIN_WINDOW_S",
    "SourceError",
    "metrics_url",
    "node_key",
    "read_pages",
    "read_prometheus",
]

#: The shortest uptime extrapolated to a month without --window.
MIN_WINDOW_S = 10.0
#: Most series a query may answer with (the queries aggregate; one is per node).
MAX_SERIES = 10_000
_FAMILY = re.compile(r"\b((?:strata|process)_[a-z_]+)")


def metrics_url(url: str) -> str:
    """`url` with ``/metrics`` when it names no path; `SourceError` unless http(s)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SourceError(f"{url[:120]!r}: not an http:// or https:// URL")
    if parts.path in ("", "/"):
        parts = parts._replace(path="/metrics")
    return urllib.parse.urlunsplit(parts)


def node_key(url: str) -> str:
    """`metrics_url(url)` spelled one way: scheme and host in lower case, the default port
    written out, no trailing slash. Two URLs with the same key are the same page."""
    parts = urllib.parse.urlsplit(metrics_url(url))
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise SourceError(f"{url[:120]!r}: not a valid port") from None
    host = (parts.hostname or "").lower()
    host = f"[{host}]" if ":" in host else host
    path = parts.path.rstrip("/") or "/"
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme.lower()}://{host}:{port}{path}{query}"


def _page(url: str, timeout: float) -> Page:
    data = get(url, timeout)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceError(f"{url}: not Prometheus text format (not UTF-8)") from None
    return parse_page(text, url)


def _window_notes(before: Page, after: Page) -> list[str]:
    if restarted(before, after):
        return [
            f"{after.source} restarted during the window (process_start_time_seconds "
            "changed): its counters are taken since the restart, counts before it are lost "
            "(its traffic is understated)"
        ]
    resets = counter_resets(before, after)
    if resets:
        return [
            f"{after.source}: {', '.join(resets)} went down during the window (a restart?): "
            "counted from 0, counts before the reset are lost"
        ]
    return []


def read_pages(
    urls: Sequence[str],
    window_s: float | None,
    *,
    timeout: float = 10.0,
    now: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[list[NodeReading], list[str]]:
    """Readings of the /metrics `urls` and notes on how their windows were chosen."""
    urls = [metrics_url(u) for u in urls]
    notes: list[str] = []
    first = [_page(u, timeout) for u in urls]
    if window_s is not None:
        started = time.monotonic()
        sleep(window_s)
        second = [_page(u, timeout) for u in urls]
        elapsed = max(time.monotonic() - started, window_s)
        readings = []
        notes.append(f"counters over a window of {elapsed:.0f} s between two reads")
        for before, after in zip(first, second, strict=True):
            if before.kind != after.kind:
                raise SourceError(f"{after.source}: changed from {before.kind} to {after.kind}")
            notes += _window_notes(before, after)
            since = None if restarted(before, after) else before
            readings.append(reading_of(after, since, elapsed))
        return readings, notes
    at = now()
    windows: dict[str, float] = {}
    for page in first:
        if page.kind != "sidecar":
            continue
        started_at = start_time(page)
        if started_at is None:
            raise SourceError(f"{page.source}: no process_start_time_seconds: use --window")
        uptime = at - started_at
        if uptime < MIN_WINDOW_S:
            ahead = (
                f"its start time is {-uptime:,.0f} s ahead of this machine's clock (clock skew?)"
                if uptime < 0
                else f"it started {uptime:.1f} s ago by this machine's clock"
            )
            raise SourceError(
                f"{page.source}: {ahead}: under {MIN_WINDOW_S:.0f} s is too short to "
                "extrapolate a month from; use --window SECONDS"
            )
        windows[page.source] = uptime
    if not windows:
        raise SourceError("no sidecar among the --metrics URLs: the report needs one")
    longest = max(windows.values())
    notes.append("counters since each sidecar started (its uptime)")
    if any(p.kind == "plugin" for p in first):
        notes.append(
            "plugin servers export no start time: their near-cache hits are taken over the "
            f"longest sidecar uptime ({longest:.0f} s); --window gives an exact window"
        )
    return [reading_of(p, None, windows.get(p.source, longest)) for p in first], notes


class _Prometheus:
    def __init__(self, url: str, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SourceError(f"{url[:120]!r}: not an http:// or https:// URL")
        self._base = url.rstrip("/")
        self._timeout = timeout

    def _answer(self, url: str) -> Any:
        try:
            raw = get(url, self._timeout)
        except HTTPStatusError as exc:  # Prometheus explains a bad query in its JSON body
            try:
                error = json.loads(exc.body).get("error")
            except (ValueError, AttributeError):
                error = None
            if isinstance(error, str):
                raise SourceError(f"{self._base}: query failed: {error[:300]}") from None
            raise
        try:
            return json.loads(raw)
        except ValueError:
            raise SourceError(f"{self._base}: not a Prometheus query API answer") from None

    def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        """The instant vector `promql` gives; every value checked (finite, from 0 to 2^63)."""
        url = f"{self._base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        answer = self._answer(url)
        family = m.group(1) if (m := _FAMILY.search(promql)) else promql
        try:
            if answer.get("status") != "success":
                raise SourceError(f"{self._base}: query failed: {answer.get('error')}")
            result = answer["data"]["result"]
            if len(result) > MAX_SERIES:
                raise SourceError(
                    f"{self._base}: {family}: {len(result):,} series in one answer (more than "
                    f"{MAX_SERIES:,}: not a Strata cluster's aggregate)"
                )
            series = [(dict(r["metric"]), float(r["value"][1])) for r in result]
        except SourceError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
            raise SourceError(f"{self._base}: not a Prometheus query API answer") from None
        for _, value in series:
            checked(value, self._base, family)
        return series

    def one(self, promql: str) -> float:
        found = self.query(promql)
        if len(found) > 1:
            raise SourceError(f"{self._base}: {promql}: {len(found)} series where one was due")
        return found[0][1] if found else 0.0

    def by(self, promql: str, label: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for m, v in self.query(promql):
            key = m.get(label, "")
            if key in out:
                raise SourceError(f"{self._base}: {promql}: two series with {label}={key!r}")
            out[key] = v
        return out


def read_prometheus(
    url: str, range_s: float, *, timeout: float = 10.0
) -> tuple[list[NodeReading], list[str]]:
    """One reading of the whole cluster from the Prometheus server at `url`, counters over
    the last `range_s` seconds (whole seconds, at least 1)."""
    if not range_s >= 1:
        raise ValueError(f"the range must be at least 1 s, got {range_s!r}")
    prom = _Prometheus(url, timeout)
    rng = f"[{int(range_s)}s]"
    nodes = int(prom.one('count(strata_tier_bytes{tier="memory"})'))
    if nodes == 0:
        raise SourceError(f"{url}: no strata_tier_bytes: Prometheus scrapes no Strata sidecar")
    if not prom.query('strata_tier_logical_bytes{tier="memory"}'):
        raise SourceError(
            f"{url}: no strata_tier_logical_bytes (sidecars older than the cost metrics?)"
        )
    held = {"memory": prom.one('sum(strata_tier_bytes{tier="memory"})')}
    held.update(prom.by('max by (tier) (strata_tier_bytes{tier!="memory"})', "tier"))
    near = prom.query("sum(strata_plugin_near_cache_bytes)")
    if near:
        held["near"] = near[0][1]
    stages = prom.by('sum by (stage) (strata_tier_body_bytes{tier="memory"})', "stage")
    footprint = MemoryFootprint(
        logical=prom.one('sum(strata_tier_logical_bytes{tier="memory"})'),
        body=stages.get("raw", 0.0),
        body_distinct=stages.get("distinct", 0.0),
        body_stored=stages.get("stored", 0.0),
    )
    written: dict[str, dict[str, float]] = {}
    for m, v in prom.query(
        f"sum by (tier, stage) (increase(strata_tier_written_bytes_total{rng}))"
    ):
        written.setdefault(m.get("tier", ""), {})[m.get("stage", "")] = v
    reading = NodeReading(
        source=url,
        window_s=float(int(range_s)),
        held=held,
        footprint=footprint,
        largest_logical=prom.one('max(strata_tier_logical_bytes{tier="memory"})'),
        lookups=prom.by(f"sum by (outcome) (increase(strata_lookups_total{rng}))", "outcome"),
        served=prom.by(
            f"sum by (outcome) (increase(strata_served_body_bytes_total{rng}))", "outcome"
        ),
        written={t: Stages(*(s.get(k, 0.0) for k in STAGES)) for t, s in written.items()},
        refused=prom.by(
            f"sum by (tier) (increase(strata_admission_refused_bytes_total{rng}))", "tier"
        ),
        promoted=prom.by(f"sum by (tier) (increase(strata_promoted_bytes_total{rng}))", "tier"),
        near_hits=prom.one(f'sum(increase(strata_plugin_hits_total{{tier="near"}}{rng}))'),
        nodes=nodes,
    )
    notes = [
        f"counters over the last {int(range_s)} s (Prometheus increase(), extrapolated to the "
        f"range's edges); {nodes} sidecar(s) scraped"
    ]
    return [reading], notes

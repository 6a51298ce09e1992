"""Where `strata cost` reads its numbers: /metrics pages, or a Prometheus server.

* `read_pages(urls, window_s)`: each URL a sidecar's or plugin server's /metrics (``/metrics``
  is added to a URL without a path). With `window_s`, every page is read twice that many
  seconds apart and the counters are the difference; without, they are taken since each
  process started (``process_start_time_seconds``; a plugin server exports none, so its
  counters are taken over the longest sidecar uptime, and a note says so).
* `read_prometheus(url, range_s)`: the cluster from a Prometheus server's HTTP API
  (``/api/v1/query``): gauges summed over nodes for the node-local tiers and taken once
  (``max``) for the shared ones, as the dashboard's cost panels do; counters as
  ``increase(...[range])`` summed over every series.

Every failure is a `SourceError` whose message names the URL and what is wrong
(unreachable, an HTTP error, not a Strata sidecar, a family missing). Proxies from the
environment are not used. Not guaranteed: a consistent cut (pages and queries are read in
turn); that a Prometheus server scrapes every node (what it has is what is reported).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from sidecar.cost.exposition import Page, SourceError, parse_page, reading_of, start_time
from sidecar.cost.model import STAGES, MemoryFootprint, NodeReading, Stages

__all__ = ["SourceError", "metrics_url", "read_pages", "read_prometheus"]

#: Largest page or answer read (a sidecar's page is ~30 KiB).
MAX_BYTES = 16 * 1024 * 1024


def metrics_url(url: str) -> str:
    """`url` with ``/metrics`` when it names no path; `SourceError` unless http(s)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SourceError(f"{url[:120]!r}: not an http:// or https:// URL")
    if parts.path in ("", "/"):
        parts = parts._replace(path="/metrics")
    return urllib.parse.urlunsplit(parts)


def _get(url: str, timeout: float) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as reply:
            data: bytes = reply.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise SourceError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise SourceError(f"{url}: unreachable ({exc.reason})") from None
    except (OSError, ValueError) as exc:
        raise SourceError(f"{url}: unreachable ({exc})") from None
    if len(data) > MAX_BYTES:
        raise SourceError(f"{url}: answer larger than {MAX_BYTES} bytes")
    return data


def _page(url: str, timeout: float) -> Page:
    data = _get(url, timeout)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceError(f"{url}: not Prometheus text format (not UTF-8)") from None
    return parse_page(text, url)


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
        for before, after in zip(first, second, strict=True):
            if before.kind != after.kind:
                raise SourceError(f"{after.source}: changed from {before.kind} to {after.kind}")
        notes.append(f"counters over a window of {elapsed:.0f} s between two reads")
        pairs = zip(first, second, strict=True)
        return [reading_of(after, before, elapsed) for before, after in pairs], notes
    at = now()
    windows: dict[str, float] = {}
    for page in first:
        if page.kind != "sidecar":
            continue
        started_at = start_time(page)
        if started_at is None:
            raise SourceError(f"{page.source}: no process_start_time_seconds: use --window")
        windows[page.source] = max(at - started_at, 1.0)
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

    def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        url = f"{self._base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        raw = _get(url, self._timeout)
        try:
            answer: Any = json.loads(raw)
            if answer.get("status") != "success":
                raise SourceError(f"{self._base}: query failed: {answer.get('error')}")
            result = answer["data"]["result"]
            return [(dict(r["metric"]), float(r["value"][1])) for r in result]
        except SourceError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
            raise SourceError(f"{self._base}: not a Prometheus query API answer") from None

    def one(self, promql: str) -> float:
        found = self.query(promql)
        return found[0][1] if found else 0.0

    def by(self, promql: str, label: str) -> dict[str, float]:
        return {m.get(label, ""): v for m, v in self.query(promql)}


def read_prometheus(
    url: str, range_s: float, *, timeout: float = 10.0
) -> tuple[list[NodeReading], list[str]]:
    """One reading of the whole cluster from the Prometheus server at `url`, counters over
    the last `range_s` seconds."""
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
        window_s=range_s,
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
        near_hits=prom.one(f'sum(increase(strata_plugin_hits_total{{tier="near"}}{rng}))'),
        nodes=nodes,
    )
    notes = [
        f"counters over the last {range_s:.0f} s (Prometheus increase(), extrapolated to the "
        f"range's edges); {nodes} sidecar(s) scraped"
    ]
    return [reading], notes

"""The plugin server's own metrics, counted in each worker where the decisions happen.

`install()` (idempotent; called at each worker's start-up and by the kong-pdk engine)
subscribes this process's `Tally` to `kong_plugin.outcome` and hands it the PDK and phase
timings of `kong_plugin.pluginserver.events`. Counting is a few dict increments under one
uncontended lock per request, and one histogram bucket per PDK round trip and per phase;
nothing is formatted on the request path.

`snapshot()` is this process's counts as one plain, MessagePack-able mapping (see
`Snapshot`), read at scrape time: the outcome counters and timings, plus what other parts
already count, read from their ``stats()`` then (`kong_plugin.background`,
`kong_plugin.refresh_pool`, each near-cache, `kong_plugin.analytics`, and the worker's
relayed steps and peer notices, which the caller passes in). The supervisor asks each worker
for one and adds them up (`kong_plugin.pluginserver.metrics_node`), so one scrape gives the
node's totals.

Label values are closed sets: each family's known values, plus ``other`` for anything else
(a bypass reason is taken as given only while it is a short token and fewer than
`MAX_LABEL_VALUES` distinct reasons were seen).

Not guaranteed: counts across a worker's restart (a new process starts from zero; the
supervisor keeps what it last read from the old one, so a node's totals never go down and
never exceed the truth, but what the old worker counted after that last read is lost);
counts of a phase that raised before publishing (`kong_plugin.outcome`); PDK and phase
timings under the kong-pdk engine (its events do not run through
`kong_plugin.pluginserver.events`); a consistent cut across families (each source is read in
turn).
"""

from __future__ import annotations

import bisect
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kong_plugin import outcome
from kong_plugin.outcome import STORE_OUTCOMES, Outcome

__all__ = [
    "FAMILIES",
    "METRIC_NAMES",
    "OTHER",
    "Family",
    "Histogram",
    "Tally",
    "install",
    "snapshot",
    "tally",
]

OTHER = "other"
#: Most distinct bypass reasons per process before the rest count as `OTHER`.
MAX_LABEL_VALUES = 48
_TOKEN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,47}")

#: ``X-Cache-Status`` word -> ``result`` label (``none``: no word sent).
RESULTS = {"Hit": "hit", "Miss": "miss", "Refresh": "refresh", "Stale": "stale", "Bypass": "bypass"}
RESULTS[""] = "none"
TIERS = ("near", "memory", "redis", "memcached", "postgres")
PHASES = ("access", "response", "log")
#: Background refreshes (`kong_plugin.refresh_pool.RefreshStats`).
REFRESH_OUTCOMES = ("started", "full", "duplicate", "done", "failed")
JOB_OUTCOMES = ("done", "dropped", "failed")
SCRAPE_ERRORS = ("timeout", "unreachable", "bad-answer")

#: Seconds: a PDK round trip is typically 30-300 µs; a phase 0.1 ms to a sidecar timeout.
PDK_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
PHASE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: its full name (counters end in ``_total``), type, its one label
    (``""``: none), the label's known values (pre-set to 0) and, for a histogram, its
    bucket bounds."""

    name: str
    kind: Kind
    help: str
    label: str = ""
    values: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


FAMILIES: tuple[Family, ...] = (
    Family(
        "strata_plugin_requests_total",
        "counter",
        "Requests the plugin saw, by the X-Cache-Status word it decided (none: no word).",
        "result",
        (*RESULTS.values(), OTHER),
    ),
    Family(
        "strata_plugin_bypass_total",
        "counter",
        "Requests answered without the cache (X-Cache-Status Bypass), by Cache-Status detail.",
        "reason",
    ),
    Family(
        "strata_plugin_stores_total",
        "counter",
        "Proxied or revalidated responses, by what became of storing them.",
        "outcome",
        (*STORE_OUTCOMES, OTHER),
    ),
    Family(
        "strata_plugin_hits_total",
        "counter",
        "Answers from a stored entry found by the access phase's lookup, by tier.",
        "tier",
        (*TIERS, OTHER),
    ),
    Family(
        "strata_plugin_pdk_seconds",
        "histogram",
        "Time an event waited on Kong for one PDK call, by phase.",
        "phase",
        (*PHASES, OTHER),
        PDK_BUCKETS,
    ),
    Family(
        "strata_plugin_phase_seconds",
        "histogram",
        "Wall time of one plugin phase in a worker (PDK waits and sidecar calls included).",
        "phase",
        (*PHASES, OTHER),
        PHASE_BUCKETS,
    ),
    Family(
        "strata_plugin_background_queue_jobs",
        "gauge",
        "Sidecar calls (lease releases, drops) queued to run after the response.",
    ),
    Family(
        "strata_plugin_background_jobs_total",
        "counter",
        "Background sidecar calls: done, dropped (queue full) or failed.",
        "outcome",
        JOB_OUTCOMES,
    ),
    Family(
        "strata_plugin_near_cache_lookups_total",
        "counter",
        "Near-cache lookups in the workers.",
        "outcome",
        ("hit", "miss"),
    ),
    Family("strata_plugin_near_cache_bytes", "gauge", "Bytes the near-caches are charged."),
    Family("strata_plugin_near_cache_entries", "gauge", "Entries the near-caches hold."),
    Family(
        "strata_plugin_near_cache_feed_up",
        "gauge",
        "Near-cache feeds connected to their sidecar (1 per worker and sidecar address).",
    ),
    Family(
        "strata_plugin_relayed_steps_total",
        "counter",
        "Kong Steps a worker relayed to the worker running the event.",
    ),
    Family(
        "strata_plugin_peer_notices_total",
        "counter",
        "Notices between the workers (origin health).",
        "direction",
        ("sent", "received"),
    ),
    Family("strata_plugin_workers", "gauge", "Worker processes running now."),
    Family(
        "strata_plugin_worker_restarts_total", "counter", "Workers started again after exiting."
    ),
    Family(
        "strata_plugin_refreshes_total",
        "counter",
        "Background refreshes: started, full (not started: max_concurrent running), "
        "duplicate (not started: already running), done, failed.",
        "outcome",
        REFRESH_OUTCOMES,
    ),
    Family(
        "strata_plugin_analytics_events_total",
        "counter",
        "Analytics events sampled and sent to the sidecar.",
        "outcome",
        ("sampled", "sent"),
    ),
    Family(
        "strata_plugin_analytics_dropped_total",
        "counter",
        "Analytics events dropped, by reason.",
        "reason",
    ),
    Family(
        "strata_plugin_analytics_buffered_events",
        "gauge",
        "Analytics events waiting to be sent.",
    ),
    Family(
        "strata_plugin_scrape_errors_total",
        "counter",
        "Workers that did not answer a scrape (their last counts were used, no gauges).",
        "reason",
        SCRAPE_ERRORS,
    ),
)
#: Every family name the plugin server exports.
METRIC_NAMES: tuple[str, ...] = tuple(f.name for f in FAMILIES)
BY_NAME: Mapping[str, Family] = {f.name: f for f in FAMILIES}

#: ``{"pid": int, "counters": {name: {label value: n}}, "gauges": {...},
#: "histograms": {name: {label value: [bucket counts..., +Inf count, sum]}}}``; a family
#: without a label has the one label value ``""``.
Snapshot = dict[str, Any]


class Histogram:
    """Counts per bucket (not cumulative; the last one is +Inf) and the sum. Not
    thread-safe: observed and read on one thread (the worker's loop)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def state(self) -> list[float]:
        return [*self.counts, self.total]


def _preset(values: tuple[str, ...]) -> dict[str, int]:
    return dict.fromkeys(values, 0)


class Tally:
    """One process's counts of outcomes and timings (see the module doc)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # outcomes may come from kong-pdk's event threads
        f = BY_NAME
        self.requests = _preset(f["strata_plugin_requests_total"].values)
        self.bypass: dict[str, int] = {}
        self.stores = _preset(f["strata_plugin_stores_total"].values)
        self.hits = _preset(f["strata_plugin_hits_total"].values)
        self.pdk = {p: Histogram(PDK_BUCKETS) for p in (*PHASES, OTHER)}
        self.phases = {p: Histogram(PHASE_BUCKETS) for p in (*PHASES, OTHER)}

    def count(self, seen: Outcome) -> None:
        """The `kong_plugin.outcome` subscriber."""
        result = RESULTS.get(seen.result, OTHER)
        store, tier = seen.store, seen.tier
        with self._lock:
            self.requests[result] += 1
            if result == "bypass":
                _bump(self.bypass, seen.detail)
            if store:
                self.stores[store if store in self.stores else OTHER] += 1
            if tier:
                self.hits[tier if tier in self.hits else OTHER] += 1

    def pdk_wait(self, phase: str, seconds: float) -> None:
        """One PDK round trip of an event of `phase` (`kong_plugin.pluginserver.events`)."""
        h = self.pdk.get(phase) or self.pdk[OTHER]
        h.counts[bisect.bisect_left(h.bounds, seconds)] += 1  # `Histogram.observe`, inlined
        h.total += seconds

    def phase_time(self, phase: str, seconds: float) -> None:
        """One phase run, start to return."""
        h = self.phases.get(phase) or self.phases[OTHER]
        h.counts[bisect.bisect_left(h.bounds, seconds)] += 1
        h.total += seconds

    def counts(self) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, list[float]]]]:
        """(counters, histograms) of the outcomes and timings, copied."""
        with self._lock:
            counters: dict[str, dict[str, float]] = {
                "strata_plugin_requests_total": dict(self.requests),
                "strata_plugin_bypass_total": dict(self.bypass),
                "strata_plugin_stores_total": dict(self.stores),
                "strata_plugin_hits_total": dict(self.hits),
            }
        histograms = {
            "strata_plugin_pdk_seconds": {p: h.state() for p, h in self.pdk.items()},
            "strata_plugin_phase_seconds": {p: h.state() for p, h in self.phases.items()},
        }
        return counters, histograms


def _bump(table: dict[str, int], value: str) -> None:
    if value in table:
        table[value] += 1
    elif len(table) < MAX_LABEL_VALUES and _TOKEN.fullmatch(value):
        table[value] = 1
    else:
        table[OTHER] = table.get(OTHER, 0) + 1


_tally = Tally()
_install_lock = threading.Lock()
_installed = False


def tally() -> Tally:
    """This process's tally."""
    return _tally


def install() -> None:
    """Count this process's outcomes and event timings (idempotent)."""
    global _installed  # noqa: PLW0603 - once per process
    from kong_plugin.pluginserver import events  # noqa: PLC0415 (kong_pdk warns on import)

    with _install_lock:
        if _installed:
            return
        outcome.subscribe(_tally.count)
        events.timers = events.Timers(_tally.pdk_wait, _tally.phase_time)
        _installed = True


def snapshot(*, relayed: int = 0, notices_sent: int = 0, notices_received: int = 0) -> Snapshot:
    """This process's counts (`Snapshot`); `relayed` and the notices are the worker's
    (`kong_plugin.pluginserver.worker.Worker`), 0 outside one."""
    from kong_plugin import runtime  # noqa: PLC0415 (loads grpc: not at import)
    from kong_plugin.near_cache import live_caches  # noqa: PLC0415

    counters, histograms = _tally.counts()
    gauges: dict[str, dict[str, float]] = {}
    queue = runtime.background.stats()
    counters["strata_plugin_background_jobs_total"] = {
        "done": queue.done,
        "dropped": queue.dropped,
        "failed": queue.failed,
    }
    gauges["strata_plugin_background_queue_jobs"] = {"": queue.depth}
    counters["strata_plugin_refreshes_total"] = _refreshes(runtime.refreshes.stats())
    hits = misses = held = entries = up = 0
    for near in live_caches():
        s = near.stats()
        hits, misses = hits + s.hits, misses + s.misses
        held, entries, up = held + s.bytes, entries + s.entries, up + int(s.connected)
    counters["strata_plugin_near_cache_lookups_total"] = {"hit": hits, "miss": misses}
    gauges["strata_plugin_near_cache_bytes"] = {"": held}
    gauges["strata_plugin_near_cache_entries"] = {"": entries}
    gauges["strata_plugin_near_cache_feed_up"] = {"": up}
    counters["strata_plugin_relayed_steps_total"] = {"": relayed}
    counters["strata_plugin_peer_notices_total"] = {
        "sent": notices_sent,
        "received": notices_received,
    }
    _analytics(counters, gauges)
    return {"pid": os.getpid(), "counters": counters, "gauges": gauges, "histograms": histograms}


def _refreshes(stats: Any) -> dict[str, float]:
    """`kong_plugin.refresh_pool.RefreshStats` as `REFRESH_OUTCOMES`."""
    from kong_plugin.refresh_pool import Outcome as Refresh  # noqa: PLC0415

    out = _preset(REFRESH_OUTCOMES)
    for what, n in stats.outcomes.items():
        if what is Refresh.SKIPPED:
            out["full"] += n
        elif what is Refresh.DUPLICATE:
            out["duplicate"] += n
        else:
            out["done" if not what.failure else "failed"] += n
    out["started"] = out["done"] + out["failed"] + stats.running
    return dict(out)


def _analytics(counters: dict[str, dict[str, float]], gauges: dict[str, dict[str, float]]) -> None:
    """`kong_plugin.analytics.stats()`, when that module is there."""
    try:
        from kong_plugin import analytics  # noqa: PLC0415
    except ImportError:
        return
    read = getattr(analytics, "stats", None)
    if not callable(read):
        return
    s = read()
    counters["strata_plugin_analytics_events_total"] = {"sampled": s.sampled, "sent": s.sent}
    counters["strata_plugin_analytics_dropped_total"] = {
        str(reason): n for reason, n in s.dropped.items()
    }
    gauges["strata_plugin_analytics_buffered_events"] = {"": s.buffered}

"""kong_plugin.plugin_metrics and the supervisor's sum (kong_plugin.pluginserver.metrics_node):
outcomes counted with bounded labels, PDK and phase timings, a worker's snapshot, totals
that survive a worker's restart without going down or overcounting, the text format."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kong_plugin import outcome, plugin_metrics, runtime
from kong_plugin.background import Background
from kong_plugin.near_cache import NearCache
from kong_plugin.outcome import Outcome
from kong_plugin.plugin_metrics import METRIC_NAMES, OTHER, Tally
from kong_plugin.pluginserver import events
from kong_plugin.pluginserver.events import Event
from kong_plugin.pluginserver.metrics_node import Totals, render

#: The names agreed in the issue's shared interfaces (alerts and dashboards use them).
AGREED = {
    "strata_plugin_requests_total",
    "strata_plugin_bypass_total",
    "strata_plugin_stores_total",
    "strata_plugin_hits_total",
    "strata_plugin_pdk_seconds",
    "strata_plugin_phase_seconds",
    "strata_plugin_background_queue_jobs",
    "strata_plugin_background_jobs_total",
    "strata_plugin_near_cache_lookups_total",
    "strata_plugin_near_cache_bytes",
    "strata_plugin_near_cache_entries",
    "strata_plugin_near_cache_feed_up",
    "strata_plugin_relayed_steps_total",
    "strata_plugin_peer_notices_total",
    "strata_plugin_workers",
    "strata_plugin_worker_restarts_total",
    "strata_plugin_refreshes_total",
    "strata_plugin_analytics_events_total",
    "strata_plugin_analytics_dropped_total",
    "strata_plugin_analytics_buffered_events",
}


def seen(result: str = "Hit", detail: str = "", tier: str = "", store: str = "") -> Outcome:
    return Outcome(
        "access", result, detail, "GET", "r", "", 200, tier, 5, "k", 1.0, 0.001, None, store
    )


def parsed(text: bytes) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> {sorted labels: value}."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_every_agreed_name_is_exported_and_listed() -> None:
    assert set(METRIC_NAMES) == AGREED | {"strata_plugin_scrape_errors_total"}
    for family in plugin_metrics.FAMILIES:
        assert family.name.endswith("_total") == (family.kind == "counter"), family.name


def test_outcomes_are_counted_by_result_reason_store_and_tier() -> None:
    tally = Tally()
    tally.count(seen("Hit", tier="near"))
    tally.count(seen("Stale", "stale-while-revalidate", tier="redis"))
    tally.count(seen("Bypass", "cookie"))
    tally.count(seen("Bypass", "cookie"))
    tally.count(seen("Miss", "stored", store="stored"))
    tally.count(seen("", "upstream-unreachable"))
    tally.count(seen("Weird", tier="floppy", store="lost"))
    assert tally.requests["hit"] == tally.requests["stale"] == tally.requests["miss"] == 1
    assert tally.requests["bypass"] == 2 and tally.requests["none"] == 1
    assert tally.requests[OTHER] == 1
    assert tally.bypass == {"cookie": 2}
    assert tally.stores["stored"] == 1 and tally.stores[OTHER] == 1
    assert tally.hits["near"] == tally.hits["redis"] == tally.hits[OTHER] == 1


def test_bypass_reasons_stay_a_bounded_set() -> None:
    tally = Tally()
    for i in range(plugin_metrics.MAX_LABEL_VALUES + 20):
        tally.count(seen("Bypass", f"reason-{i}"))
    tally.count(seen("Bypass", "Not A Token\n"))
    assert len(tally.bypass) == plugin_metrics.MAX_LABEL_VALUES + 1
    assert tally.bypass[OTHER] == 21


def test_install_is_idempotent_and_counts_published_outcomes() -> None:
    plugin_metrics.install()
    plugin_metrics.install()
    tally = plugin_metrics.tally()
    assert outcome.subscribers().count(tally.count) == 1
    assert events.timers is not None
    before = tally.requests["refresh"]
    outcome.publish(seen("Refresh"))
    assert tally.requests["refresh"] == before + 1


def test_an_events_pdk_round_trips_and_its_phase_are_timed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tally = Tally()
    monkeypatch.setattr(events, "timers", events.Timers(tally.pdk_wait, tally.phase_time))

    def phase(kong: Any) -> None:
        kong.request.get_header("a")
        kong.request.get_header("b")
        kong.response.exit(200)  # terminal: no answer to wait for, not timed

    event = Event(phase, 64, "access")
    assert event.start().kind == "call"
    assert event.feed(("x", None)).kind == "call"
    assert event.feed(("y", None)).kind == "exit"
    assert event.feed((None, None)).kind == "ret"
    assert sum(tally.pdk["access"].counts) == 2
    assert sum(tally.phases["access"].counts) == 1
    assert sum(tally.pdk["log"].counts) == 0
    Event(lambda kong: None, 128, "certificate").start()
    assert sum(tally.phases[OTHER].counts) == 1


def test_a_snapshot_reads_the_other_parts_stats(monkeypatch: pytest.MonkeyPatch) -> None:
    queue = Background(workers=1)
    queue.submit(lambda: None)
    queue.submit(lambda: 1 / 0)
    assert queue.join(5)
    monkeypatch.setattr(runtime, "background", queue)
    near = NearCache(max_bytes=1 << 20, max_entry_bytes=1 << 16)
    near.set_connected(True)
    assert near.get("k", []) is None
    snap = plugin_metrics.snapshot(relayed=3, notices_sent=4, notices_received=5)
    assert snap["pid"] == os.getpid()
    c, g = snap["counters"], snap["gauges"]
    assert c["strata_plugin_background_jobs_total"] == {"done": 1, "dropped": 0, "failed": 1}
    assert g["strata_plugin_background_queue_jobs"] == {"": 0}
    assert c["strata_plugin_near_cache_lookups_total"]["miss"] >= 1
    assert g["strata_plugin_near_cache_feed_up"][""] >= 1
    assert c["strata_plugin_relayed_steps_total"] == {"": 3}
    assert c["strata_plugin_peer_notices_total"] == {"sent": 4, "received": 5}
    assert set(c["strata_plugin_refreshes_total"]) == set(plugin_metrics.REFRESH_OUTCOMES)
    assert set(c["strata_plugin_analytics_events_total"]) == {"sampled", "sent"}
    assert "strata_plugin_analytics_buffered_events" in g
    render(c, g, snap["histograms"])  # renders


def _snap(pid: int, hits: int, entries: int) -> dict[str, Any]:
    return {
        "pid": pid,
        "counters": {"strata_plugin_requests_total": {"hit": hits}},
        "gauges": {"strata_plugin_near_cache_entries": {"": entries}},
        "histograms": {"strata_plugin_pdk_seconds": {"access": [hits, 0, 0.5]}},
    }


def test_totals_never_go_down_when_a_worker_restarts_and_never_overcount() -> None:
    totals = Totals()
    totals.add(0, _snap(100, hits=10, entries=3))
    totals.add(1, _snap(101, hits=5, entries=2))
    assert totals.counters()["strata_plugin_requests_total"]["hit"] == 15
    totals.add(1, _snap(101, hits=7, entries=2))  # same process: its newer count replaces
    assert totals.counters()["strata_plugin_requests_total"]["hit"] == 17
    totals.add(1, _snap(202, hits=1, entries=0))  # worker 1 restarted: 7 kept, 1 added
    assert totals.counters()["strata_plugin_requests_total"]["hit"] == 18
    totals.add(1, _snap(202, hits=4, entries=0))
    assert totals.counters()["strata_plugin_requests_total"]["hit"] == 21
    assert totals.histograms()["strata_plugin_pdk_seconds"]["access"] == [21, 0, 1.5]


def test_the_text_format_has_every_family_with_its_known_labels_and_cumulative_buckets() -> None:
    tally = Tally()
    tally.count(seen("Bypass", "cookie"))
    tally.pdk_wait("access", 0.0002)
    tally.pdk_wait("access", 0.003)
    tally.pdk_wait("access", 99.0)
    counters, histograms = tally.counts()
    gauges: dict[str, dict[str, float]] = {"strata_plugin_workers": {"": 2}}
    text = render(counters, gauges, histograms)
    got = parsed(text)
    assert got["strata_plugin_requests_total"][(("result", "bypass"),)] == 1
    assert got["strata_plugin_requests_total"][(("result", "hit"),)] == 0
    assert got["strata_plugin_bypass_total"][(("reason", "cookie"),)] == 1
    assert got["strata_plugin_workers"][()] == 2
    buckets = got["strata_plugin_pdk_seconds_bucket"]
    assert buckets[(("le", "0.0001"), ("phase", "access"))] == 0
    assert buckets[(("le", "0.00025"), ("phase", "access"))] == 1
    assert buckets[(("le", "0.005"), ("phase", "access"))] == 2
    assert buckets[(("le", "+Inf"), ("phase", "access"))] == 3
    assert got["strata_plugin_pdk_seconds_count"][(("phase", "access"),)] == 3
    assert got["strata_plugin_pdk_seconds_sum"][(("phase", "access"),)] == pytest.approx(99.0032)
    assert "strata_plugin_near_cache_bytes" not in got  # no source gave it: left out


@pytest.fixture(autouse=True)
def _fresh_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(runtime, "background", Background(workers=1))
    yield

"""The fault suite's arithmetic: Zipf ranks, windows, time to recover, the origin's sizes,
the markdown table (no servers)."""

from __future__ import annotations

import json
import random
from collections import Counter

from bench.faults_load import NO_CACHE_STATUS, Sample, Timeline, Zipf
from bench.faults_report import markdown
from bench.faults_upstream import LARGE, SMALL, body, body_size


def hit(t: float) -> Sample:
    return Sample(t, 0.001, 200, "Hit", "")


def miss(t: float) -> Sample:
    return Sample(t, 0.001, 200, "Miss", "")


def test_zipf_prefers_low_ranks_and_stays_in_range() -> None:
    rng = random.Random(3)
    counts = Counter(Zipf(100, 1.0).sample(rng) for _ in range(20_000))
    assert set(counts) <= set(range(100))
    # P(0) / P(1) = 2 for alpha 1
    assert 1.7 < counts[0] / counts[1] < 2.3
    assert counts[0] > counts[9] * 5


def test_window_counts_errors_bypasses_and_hits_by_completion_time() -> None:
    samples = [
        hit(0.5),
        Sample(1.0, 0.01, 0, "", "ClientConnectorError"),
        Sample(1.2, 0.01, 502, "", "HTTP 502"),
        Sample(1.4, 0.01, 200, "Bypass", "", NO_CACHE_STATUS),
        hit(1.6),
        Sample(1.8, 0.01, 200, "Stale", ""),
        hit(2.5),
    ]
    w = Timeline(samples).window(1.0, 2.0)
    assert (w.requests, w.errors, w.bypasses, w.from_cache) == (5, 2, 1, 2)
    assert w.errors_by_kind == {"ClientConnectorError": 1, "HTTP 502": 1}
    assert w.bypasses_by_reason == {NO_CACHE_STATUS: 1}
    assert w.hit_ratio == 2 / 5
    assert Timeline([]).window(0, 1).hit_ratio is None


def test_time_to_recover_is_the_start_of_the_first_good_window() -> None:
    # misses for 1.5 s after the return at t=10, then hits only
    samples = [miss(10 + i / 20) for i in range(30)] + [hit(11.5 + i / 20) for i in range(60)]
    timeline = Timeline(samples)
    assert timeline.time_to_recover(10.0, 14.5, target=0.95) == 1.5
    assert timeline.time_to_recover(11.5, 14.5, target=0.95) == 0.0
    # never good enough, or too few requests in every window
    assert timeline.time_to_recover(10.0, 11.4, target=0.95) is None
    assert Timeline([hit(10.1)]).time_to_recover(10.0, 12.0, target=0.5) is None


def test_origin_sizes_are_fixed_per_item_and_bodies_are_json_of_that_size() -> None:
    sizes = [body_size(n, 0.1) for n in range(500)]
    assert sizes == [body_size(n, 0.1) for n in range(500)]
    large = [s for s in sizes if s >= LARGE[0]]
    assert 20 < len(large) < 90
    assert all(SMALL[0] <= s <= SMALL[1] or LARGE[0] <= s <= LARGE[1] for s in sizes)
    for n in (1, 7):
        payload = body(n, sizes[n])
        assert json.loads(payload)["id"] == n
        assert abs(len(payload) - sizes[n]) <= 16


def test_markdown_has_one_row_per_fault() -> None:
    report = {
        "fault": "redis",
        "client_errors": 0,
        "bypasses_fault": 2,
        "bypasses_recovery": 0,
        "hit_ratio": {"before": 0.99, "during": 0.5, "after": None},
        "recover_s": None,
        "fault_s": 10.2,
        "origin_requests": {"steady": 1, "fault": 40, "recovery": 3},
        "crashed": True,
        "crashes": ["sidecar-1 pid 7: signal SIGSEGV (unasked)"],
        "repaired": True,
        "sidecar_rss_mib": 80.5,
    }
    table = markdown([report]).splitlines()
    assert len(table) == 3
    assert table[2].startswith("| redis | 0 | 2 / 0 | 99.0 / 50.0 / - | never | 10.2 | 40 / 3 |")
    assert "SIGSEGV" in table[2]

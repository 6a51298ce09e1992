"""`strata cost`'s model: hand-computed reports, prices refused, what is summed and what is
counted once."""

from __future__ import annotations

import math

import pytest

from sidecar.cost.model import (
    GIB,
    MONTH_SECONDS,
    MemoryFootprint,
    NodeReading,
    Prices,
    Stages,
    compute,
)

PRICES = Prices(ram_gb_month=10.0, disk_gb_month=0.1, origin_per_million=0.4, egress_per_gb=0.09)
HOUR = 3600.0
#: An hour is 1/720 of the 30-day month.
PER_MONTH = MONTH_SECONDS / HOUR


def sidecar(**kw: object) -> NodeReading:
    base: dict[str, object] = {
        "source": "s",
        "window_s": HOUR,
        "held": {"memory": 1 * GIB, "redis": 2 * GIB, "postgres": 10 * GIB},
        "footprint": MemoryFootprint(
            logical=3 * GIB, body=2 * GIB, body_distinct=GIB, body_stored=GIB / 4
        ),
        "lookups": {"hit": 900.0, "miss": 80.0, "stale": 20.0},
        "served": {"hit": 900 * 1000.0, "stale": 20 * 1000.0},
        "written": {"redis": Stages(4000, 3000, 2000, 500, 1000)},
        "refused": {"memory": 123.0},
    }
    base.update(kw)
    return NodeReading(**base)  # type: ignore[arg-type]


def plugin(near_hits: float = 100.0) -> NodeReading:
    return NodeReading(
        source="p", window_s=HOUR, sidecar=False, held={"near": GIB / 2}, near_hits=near_hits
    )


def test_a_hand_computed_report() -> None:
    report = compute([sidecar(), plugin()], PRICES, nodes=2)

    costs = {t.tier: (t.kind, t.monthly) for t in report.tiers}
    assert costs == {
        "near": ("ram", 5.0),
        "memory": ("ram", 10.0),
        "redis": ("ram", 20.0),
        "postgres": ("disk", 1.0),
    }
    assert [t.tier for t in report.tiers] == ["near", "memory", "redis", "postgres"]
    assert report.strata_storage == pytest.approx(36.0)

    # requests: 1,000 lookups + 100 near hits; hits: 900 + 100; stale and misses: origin
    assert report.requests.window == 1100
    assert report.origin_requests_avoided.window == 1000
    assert report.origin_requests.window == 100
    assert report.requests.month == pytest.approx(1100 * PER_MONTH)
    assert report.origin_requests.month == pytest.approx(100 * PER_MONTH)
    # egress avoided: the hits' bodies + near hits at the mean hit body (1,000 bytes)
    assert report.egress_avoided_bytes.window == pytest.approx(900_000 + 100 * 1000)
    assert report.egress_bytes.window == pytest.approx(100 * 1000)
    assert report.strata_origin == pytest.approx(100 * PER_MONTH / 1e6 * 0.4)
    assert report.strata_egress == pytest.approx(100_000 * PER_MONTH / GIB * 0.09)

    # naive: the largest of memory's 3 GiB and redis' 2 GiB x 4000/1000 = 8 GiB, per node
    assert report.naive_bytes_per_node == pytest.approx(8 * GIB)
    assert report.naive_storage == pytest.approx(8 * 2 * 10.0)
    assert report.naive_total == pytest.approx(160 + report.strata_origin + report.strata_egress)
    assert report.no_cache_origin == pytest.approx(1100 * PER_MONTH / 1e6 * 0.4)
    assert report.no_cache_egress == pytest.approx(1_100_000 * PER_MONTH / GIB * 0.09)
    assert report.saving_vs_naive == pytest.approx(160 - 36)
    assert report.storage_ratio_vs_naive == pytest.approx(36 / 160)
    assert report.ratio_vs_naive == pytest.approx(report.strata_total / report.naive_total)

    assert report.written["redis"].dedup_saved == 1000
    assert report.written["redis"].compression_saved == 1500
    assert report.refused == {"memory": 123.0}
    assert any("redis: logical bytes held estimated" in a for a in report.assumptions)
    assert not any("near-cache hits not counted" in a for a in report.assumptions)


def test_node_local_tiers_are_summed_and_shared_ones_counted_once() -> None:
    a = sidecar(source="a", held={"memory": 100.0, "redis": 1000.0})
    b = sidecar(source="b", held={"memory": 50.0, "redis": 900.0})
    report = compute([a, b], PRICES)
    held = {t.tier: t.held_bytes for t in report.tiers}
    assert held == {"memory": 150.0, "redis": 1000.0}
    assert report.nodes == 2
    assert report.memory_now == MemoryFootprint(6 * GIB, 4 * GIB, 2 * GIB, GIB / 2)
    # the naive copy per node is the largest node's memory logical, not the sum
    assert report.naive_bytes_per_node == pytest.approx(max(3 * GIB, 1000.0 * 4000 / 1000))
    assert report.written["redis"] == Stages(8000, 6000, 4000, 1000, 2000)


def test_rates_of_nodes_with_different_windows_add_up() -> None:
    a = sidecar(source="a", window_s=HOUR, lookups={"hit": 360.0}, written={})
    b = sidecar(source="b", window_s=2 * HOUR, lookups={"hit": 360.0}, written={})
    report = compute([a, b], PRICES)
    assert report.requests.window == 720
    # 360/h + 180/h for 720 hours
    assert report.requests.month == pytest.approx(540 * 720)
    assert report.window_s == 2 * HOUR


def test_without_plugin_servers_and_without_hits_the_gaps_are_said() -> None:
    report = compute([sidecar(lookups={"miss": 10.0}, served={})], PRICES)
    assert report.egress_bytes.window == 0
    assert report.origin_requests.window == 10
    text = " ".join(report.assumptions)
    assert "near-cache hits not counted" in text
    assert "no sidecar hits" in text


def test_a_short_window_is_flagged() -> None:
    report = compute([sidecar(window_s=60.0)], PRICES)
    assert any("60 s is short" in a for a in report.assumptions)


def test_the_naive_side_is_at_least_the_memory_tiers_logical_bytes() -> None:
    report = compute([sidecar(written={})], PRICES)
    assert report.naive_bytes_per_node == 3 * GIB
    assert report.naive_storage == pytest.approx(30.0)


@pytest.mark.parametrize("field", ["ram_gb_month", "disk_gb_month", "origin_per_million"])
@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf])
def test_bad_prices_are_refused_by_name(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        Prices(**{field: value})


def test_zero_prices_are_allowed() -> None:
    report = compute([sidecar()], Prices(0, 0, 0, 0))
    assert report.strata_total == 0 and report.ratio_vs_naive is None


def test_no_sidecar_or_no_window_is_an_error() -> None:
    with pytest.raises(ValueError, match="no sidecar"):
        compute([plugin()], PRICES)
    with pytest.raises(ValueError, match="positive window"):
        compute([sidecar(window_s=0.0)], PRICES)
    with pytest.raises(ValueError, match="nodes"):
        compute([sidecar()], PRICES, nodes=0)

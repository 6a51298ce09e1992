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

    # naive: the memory tier's 3 GiB of logical bytes per node (redis is left out)
    assert report.naive_bytes_per_node == pytest.approx(3 * GIB)
    assert report.naive_storage == pytest.approx(3 * 2 * 10.0)
    assert report.naive_total == pytest.approx(60 + report.strata_origin + report.strata_egress)
    assert report.no_cache_origin == pytest.approx(1100 * PER_MONTH / 1e6 * 0.4)
    assert report.no_cache_egress == pytest.approx(1_100_000 * PER_MONTH / GIB * 0.09)
    assert report.saving_vs_naive == pytest.approx(60 - 36)
    assert report.storage_ratio_vs_naive == pytest.approx(36 / 60)
    assert report.ratio_vs_naive == pytest.approx(report.strata_total / report.naive_total)

    assert report.written["redis"].dedup_saved == 1000
    assert report.written["redis"].compression_saved == 1500
    assert report.refused == {"memory": 123.0}
    assert any("redis: bytes held are the whole server's" in a for a in report.assumptions)
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
    assert report.naive_bytes_per_node == pytest.approx(3 * GIB)
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


def test_the_naive_side_is_a_lower_bound_that_leaves_shared_tiers_out() -> None:
    """Issue 15, finding 1: a shared server's whole usage (here 20 GiB, most of it other
    data) scaled by the writes' logical/stored ratio made the naive side 80 GiB; it is
    only what Strata knows it caches: the largest node's memory-tier logical bytes."""
    big_redis = {"memory": 1 * GIB, "redis": 20 * GIB}
    report = compute([sidecar(held=big_redis)], PRICES)
    assert report.naive_bytes_per_node == 3 * GIB
    tiers = {t.tier: t.whole_server for t in report.tiers}
    assert tiers == {"memory": False, "redis": True}
    text = " ".join(report.assumptions)
    assert "redis: bytes held are the whole server's (Redis used_memory" in text
    assert "redis left out" in text and "lower bound" in text


def test_without_a_memory_tier_the_naive_side_is_zero_and_says_why() -> None:
    report = compute([sidecar(footprint=None, held={"redis": GIB})], PRICES)
    assert report.naive_bytes_per_node == 0 and report.naive_storage == 0
    assert report.storage_ratio_vs_naive is None
    assert any("no memory tier was read" in a for a in report.assumptions)


def test_admission_for_shared_tiers_is_net_of_what_promotion_stored() -> None:
    """Issue 15, finding 5: bytes refused at their store and promoted later were counted
    as both kept out and written."""
    refused = {"memory": 50.0, "redis": 1000.0, "memcached": 400.0}
    a = sidecar(source="a", refused=refused, promoted={"redis": 700.0, "memcached": 900.0})
    b = sidecar(source="b", refused={"redis": 100.0}, promoted={})
    report = compute([a, b], PRICES)
    assert report.refused == {"memory": 50.0, "redis": 1100.0, "memcached": 400.0}
    assert report.promoted == {"redis": 700.0, "memcached": 900.0}
    # memory as refused; redis 1,100 - 700; memcached floored at 0
    assert report.kept_out == {"memory": 50.0, "redis": 400.0, "memcached": 0.0}
    assert any("refused less those promotion stored" in a for a in report.assumptions)


def test_admission_is_not_netted_when_a_sidecar_does_not_say_what_it_promoted() -> None:
    old = sidecar(source="old", refused={"redis": 1000.0})  # promoted: None (older build)
    new = sidecar(source="new", refused={"redis": 10.0}, promoted={"redis": 10.0})
    report = compute([old, new], PRICES)
    assert report.kept_out is None
    assert any("not net of promotion" in a for a in report.assumptions)

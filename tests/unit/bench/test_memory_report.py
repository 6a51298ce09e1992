"""`bench.memory_report.headline`: the rows BENCHMARKS.md shows, each with the contract's
fields, a verdict against its target, and none for what did not run."""

from __future__ import annotations

from typing import Any

from bench.memory_report import TARGET_RATIO, TARGET_RSS_OVER_COUNTED, headline

FIELDS = {"name", "value", "unit", "baseline", "target", "met"}


def _report(redis: bool) -> dict[str, Any]:
    report: dict[str, Any] = {
        "memory": {"ratio": 0.45},
        "paid": {"sidecar_rss": {"rss_over_naive": 0.48, "rss_over_counted": 1.09}},
    }
    if redis:
        report["redis"] = {"ratio": 0.22}
        report["paid"]["redis_used_memory"] = {"ratio": 0.23}
    return report


def test_every_row_has_the_contract_fields_and_a_verdict() -> None:
    rows = headline(_report(redis=True))
    assert [r["name"] for r in rows] == [
        "RAM per response, Strata memory tier RSS vs proxy-cache naive bytes",
        "Redis used_memory per response, Strata vs naive",
        "memory tier RSS / counted bytes",
        "memory tier counted bytes per response, Strata vs naive (compression + dedup)",
        "Redis MEMORY USAGE per response, Strata vs naive (compression + dedup)",
    ]
    for row in rows:
        assert set(row) == FIELDS
        assert row["unit"] == "x"
        assert row["baseline"]
    by_name = {r["name"]: r for r in rows}
    rss = by_name["memory tier RSS / counted bytes"]
    assert rss["value"] == 1.09
    assert rss["target"] == f"<= {TARGET_RSS_OVER_COUNTED}x"
    assert rss["met"] is True
    ram = by_name["RAM per response, Strata memory tier RSS vs proxy-cache naive bytes"]
    assert ram["target"] == f"<= {TARGET_RATIO}x"
    assert ram["met"] is False  # 0.48 > 0.3
    assert by_name["Redis used_memory per response, Strata vs naive"]["met"] is True


def test_without_redis_its_rows_are_left_out() -> None:
    names = [r["name"] for r in headline(_report(redis=False))]
    assert len(names) == 3
    assert not any("Redis" in n for n in names)


def test_a_value_at_the_target_meets_it() -> None:
    report = _report(redis=False)
    report["paid"]["sidecar_rss"]["rss_over_counted"] = TARGET_RSS_OVER_COUNTED
    row = next(r for r in headline(report) if r["name"] == "memory tier RSS / counted bytes")
    assert row["met"] is True

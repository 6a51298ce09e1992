"""`strata cost`'s rendering: the verdict sentence in every case, the admission section, the
whole-server label, and JSON that is always valid."""

from __future__ import annotations

import json

from sidecar.cost.model import GIB, MemoryFootprint, NodeReading, Prices, compute
from sidecar.cost.render import as_json, table

PRICES = Prices(ram_gb_month=10.0, disk_gb_month=0.1, origin_per_million=0.4, egress_per_gb=0.09)


def reading(**kw: object) -> NodeReading:
    base: dict[str, object] = {
        "source": "s",
        "window_s": 3600.0,
        "held": {"memory": GIB / 4, "redis": GIB / 4},
        "footprint": MemoryFootprint(logical=GIB, body=GIB, body_distinct=GIB, body_stored=GIB),
        "lookups": {"hit": 900.0, "miss": 100.0},
        "served": {"hit": 900_000.0},
        "refused": {"redis": 1000.0},
        "promoted": {"redis": 600.0},
    }
    base.update(kw)
    return NodeReading(**base)  # type: ignore[arg-type]


def verdict(text: str) -> str:
    (line,) = [x for x in text.splitlines() if x.startswith("Strata against the naive way")]
    return line


def test_the_verdict_says_less_with_both_ratios() -> None:
    report = compute([reading()], PRICES)
    assert verdict(table(report)) == (
        f"Strata against the naive way: {report.saving_vs_naive:.2f} less per month "
        f"({report.ratio_vs_naive:.2f}x its total, {report.storage_ratio_vs_naive:.2f}x its "
        "storage)."
    )


def test_with_no_traffic_and_no_naive_copy_the_verdict_says_more_without_empty_brackets() -> None:
    """Issue 15, finding 9: "-0.05 less per month ()"."""
    report = compute(
        [reading(footprint=None, lookups={}, served={}, held={"redis": GIB / 200})], PRICES
    )
    assert report.ratio_vs_naive is None and report.storage_ratio_vs_naive is None
    assert verdict(table(report)) == "Strata against the naive way: 0.05 more per month."


def test_an_equal_cost_is_said_as_such() -> None:
    report = compute([reading(held={}, lookups={}, served={})], Prices(0, 0, 0, 0))
    assert verdict(table(report)) == "Strata against the naive way: the same per month."


def test_shared_servers_are_labelled_whole_and_admission_is_netted() -> None:
    text = table(compute([reading()], PRICES))
    assert "  redis (ram, whole server)" in text
    assert "  memory (ram)" in text
    lines = text.splitlines()
    header = next(i for i, x in enumerate(lines) if x.startswith("Admission in the window"))
    assert lines[header].split()[-5:] == ["refused", "promoted", "later", "kept", "out"]
    assert lines[header + 1].split() == ["redis", "1000", "B", "600", "B", "400", "B"]


def test_admission_without_promotions_known_is_labelled_gross() -> None:
    text = table(compute([reading(promoted=None)], PRICES))
    assert "Refused by admission in the window (logical bytes; not net of promotion)" in text


def test_json_is_strict_and_carries_the_new_fields() -> None:
    doc = as_json(compute([reading()], PRICES), ["a note"])
    parsed = json.loads(json.dumps(doc, allow_nan=False))
    assert parsed["admission_kept_out_bytes"] == {"redis": 400.0}
    assert parsed["promoted_bytes"] == {"redis": 600.0}
    assert [t["whole_server"] for t in parsed["tiers"]] == [False, True]
    assert parsed["monthly"]["naive"]["bytes_per_node"] == GIB

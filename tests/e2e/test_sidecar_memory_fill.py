"""A real sidecar filled beyond its memory budget grows its resident set by at most 1.5x
the budget, whatever fills it: many distinct tags per entry, many small entries, mid-size
bodies (`bench.fill`; the RSS is measured over the warmed-up empty process). Before the
memory tier counted its tag index, 2,000 entries of 256 tags took ~3.7x a 32 MiB budget."""

from __future__ import annotations

import pytest

from bench.fill import TARGET_RATIO, fill

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(("pattern", "stores"), [("tags", 2000), ("small", 30_000), ("mid", 5000)])
def test_rss_stays_within_one_and_a_half_budgets_once_filled(pattern: str, stores: int) -> None:
    report = fill(pattern, stores)
    assert report["errors"] == 0, report["first_error"]
    assert report["evictions"] > 0, "the budget never filled"
    assert report["ratio"] <= TARGET_RATIO, report

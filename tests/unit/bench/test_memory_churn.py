"""`bench.churn.over_counted`: RSS growth over the tier's count, none while it counts
nothing."""

from __future__ import annotations

from bench.churn import over_counted


def test_growth_over_counted_bytes() -> None:
    assert over_counted(114, 100) == 1.14
    assert over_counted(-5, 100) == -0.05  # RSS may shrink below the warmed-up baseline
    assert over_counted(1000, 0) is None

"""The sidecar's resident set stays near its memory budget under churn (issue 8's target:
``(RSS - empty-process RSS) / memory_max_bytes <= 1.5``), in a bounded run of
`python -m bench memory --churn-seconds`'s scenario: a real sidecar process, several
client threads storing new keys with 1 KiB-256 KiB bodies (half compressible) and looking
up recent ones, so that the memory tier evicts all the time."""

from __future__ import annotations

import pytest

from bench.churn import TARGET_RATIO, churn

pytestmark = pytest.mark.e2e

SECONDS = 25.0
BUDGET = 32 * 1024**2


def test_rss_stays_within_one_and_a_half_budgets_under_churn() -> None:
    report = churn(SECONDS, budget=BUDGET, threads=3, sample_seconds=1.0)
    assert report["errors"] == 0
    samples = report["samples"]
    full = [s for s in samples if s["evictions"] > 0]
    assert len(full) >= len(samples) // 2, "the budget never filled: no churn was measured"
    assert report["stored_mib"] > 4 * BUDGET / 1024**2  # the budget turned over 4 times
    worst = max(s["ratio"] for s in full)
    assert worst <= TARGET_RATIO, (
        f"(RSS - baseline) / budget reached {worst} (baseline "
        f"{report['baseline_rss_bytes'] >> 20} MiB): {[s['ratio'] for s in full]}"
    )

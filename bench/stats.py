"""Small statistics helpers for the benchmarks."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of already sorted values, nearest rank."""
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


def summarize(latencies_s: Sequence[float], elapsed_s: float) -> dict[str, float]:
    """p50/p99 in microseconds and operations per second."""
    values = sorted(latencies_s)
    return {
        "p50_us": round(percentile(values, 0.50) * 1e6, 1),
        "p99_us": round(percentile(values, 0.99) * 1e6, 1),
        "ops_s": round(len(values) / elapsed_s, 1) if elapsed_s > 0 else 0.0,
        "n": len(values),
    }


def median_of(runs: Sequence[dict[str, float]], digits: int = 1) -> dict[str, float]:
    """Field-wise median of several summaries, rounded to `digits` places."""
    keys = runs[0].keys()
    return {k: round(statistics.median(r[k] for r in runs), digits) for k in keys}

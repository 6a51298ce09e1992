"""The headline rows of `python -m bench memory` (the rows BENCHMARKS.md shows), from its
report: RAM and Redis memory per response where they are paid (RSS, ``used_memory``)
against the naive layout, the memory tier's RSS against its own count, and the bytes the
tiers count against the naive layout (compression and dedup).

Pure: reads the report's numbers, measures nothing. A row whose measurement did not run
(no Redis) is left out rather than reported as a number.
"""

from __future__ import annotations

from typing import Any

#: Strata's bytes per response against the naive layout's.
TARGET_RATIO = 0.3
#: A process's RSS growth against the bytes its memory tier counts: what an operator
#: expects of a budget.
TARGET_RSS_OVER_COUNTED = 1.2

NAIVE = (
    "Kong proxy-cache layout (one JSON document per key, raw body, no dedup), same corpus, same run"
)


def _row(name: str, value: float, unit: str, baseline: str, limit: float | None) -> dict[str, Any]:
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "target": None if limit is None else f"<= {limit}{unit if unit == 'x' else ''}",
        "met": None if limit is None else value <= limit,
    }


def headline(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The headline rows of `report` (see the module docstring)."""
    rows = []
    paid = report.get("paid", {})
    if "sidecar_rss" in paid:
        rss = paid["sidecar_rss"]
        rows.append(
            _row(
                "RAM per response, Strata memory tier RSS vs proxy-cache naive bytes",
                rss["rss_over_naive"],
                "x",
                f"{NAIVE}: its length alone, without Kong's shared-dict overhead "
                "(favours the baseline)",
                TARGET_RATIO,
            )
        )
    if "redis_used_memory" in paid:
        rows.append(
            _row(
                "Redis used_memory per response, Strata vs naive",
                paid["redis_used_memory"]["ratio"],
                "x",
                f"{NAIVE}, SET directly; used_memory growth, median of rounds",
                TARGET_RATIO,
            )
        )
    if "sidecar_rss" in paid:
        rows.append(
            _row(
                "memory tier RSS / counted bytes",
                paid["sidecar_rss"]["rss_over_counted"],
                "x",
                "the memory tier's own byte count (Stats) of the same entries, same sidecar",
                TARGET_RSS_OVER_COUNTED,
            )
        )
    for tier, what in (("memory", "memory tier counted bytes"), ("redis", "Redis MEMORY USAGE")):
        if tier in report:
            rows.append(
                _row(
                    f"{what} per response, Strata vs naive (compression + dedup)",
                    report[tier]["ratio"],
                    "x",
                    NAIVE,
                    TARGET_RATIO,
                )
            )
    return rows

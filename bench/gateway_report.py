"""`bench gateway`'s figures as ratios and targets (pure functions of what was measured).

Targets (issue 13): hits/s with 8 clients at least 0.5x the no-plugin proxy's and at least 3x
the no-plugin proxy's to a 10 ms upstream; a hit adds at most 0.5 ms to the no-plugin p50;
PDK Step round trips per request at most 4 for a hit and 7 for a miss (all phases); a stored
miss visible to a direct sidecar lookup within 10 ms at p99. Nothing here judges absolute
times against a machine: every ratio's two sides come from the same run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

TARGETS: dict[str, float] = {
    "hit_ops_vs_no_plugin_min": 0.5,
    "hit_ops_vs_10ms_upstream_min": 3.0,
    "hit_added_p50_us_max": 500.0,
    "hit_step_round_trips_max": 4,
    "miss_step_round_trips_max": 7,
    "store_visibility_p99_ms_max": 10.0,
}


def ratio(num: float, den: float) -> float:
    """num / den rounded to 3 places; NaN when either side is missing or den is 0."""
    if not (math.isfinite(num) and math.isfinite(den)) or den == 0:
        return float("nan")
    return round(num / den, 3)


def variant_figures(
    sequential: Mapping[str, Mapping[str, float]],
    concurrent: Mapping[str, Mapping[str, float]],
    pdk: Mapping[str, Mapping[str, Any]],
    visibility: Mapping[str, Any],
) -> dict[str, Any]:
    """Ratios of one variant against the baselines measured with it, and which targets
    they meet (a NaN figure meets nothing)."""
    hit_ops = concurrent["hit"]["ops_s"]
    no_plugin_ops = concurrent["no_plugin"]["ops_s"]
    added_us = round(sequential["hit"]["p50_us"] - sequential["no_plugin"]["p50_us"], 1)
    ratios = {
        "hit_ops_vs_no_plugin": ratio(hit_ops, no_plugin_ops),
        "hit_ops_vs_10ms_upstream": ratio(hit_ops, concurrent["no_plugin_upstream_10ms"]["ops_s"]),
        "miss_ops_vs_no_plugin": ratio(concurrent["miss"]["ops_s"], no_plugin_ops),
    }
    vis_p99 = float(visibility.get("p99_ms", float("nan")))
    lost = visibility.get("not_visible_within_s", {}).get("count", 0)
    n = visibility.get("n", 0)
    # every entry already there for the first lookup after its answer: the upper bound is
    # only the measuring lookup's own round trip
    always_first = bool(n) and visibility.get("found_at_first_lookup", 0) == n
    t = TARGETS
    meets = {
        "hit_ops_vs_no_plugin": ratios["hit_ops_vs_no_plugin"] >= t["hit_ops_vs_no_plugin_min"],
        "hit_ops_vs_10ms_upstream": ratios["hit_ops_vs_10ms_upstream"]
        >= t["hit_ops_vs_10ms_upstream_min"],
        "hit_added_p50": added_us <= t["hit_added_p50_us_max"],
        "hit_step_round_trips": pdk["hit"]["step_round_trips"] <= t["hit_step_round_trips_max"],
        "miss_step_round_trips": pdk["miss"]["step_round_trips"] <= t["miss_step_round_trips_max"],
        "store_visibility_p99": (vis_p99 <= t["store_visibility_p99_ms_max"] or always_first)
        and not lost,
    }
    return {"hit_added_p50_us": added_us, "ratios": ratios, "meets": meets}


def scaling(variants: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Every variant against the first one: hits/s and the plugin server's CPU per hit, and
    for each engine with several worker counts, N workers against its fewest."""
    names = list(variants)
    if not names:
        return {}

    def hit_ops(name: str) -> float:
        return float(variants[name][f"clients_{variants[name]['clients']}"]["hit"]["ops_s"])

    def plugin_cpu(name: str) -> float:
        return float(variants[name]["cpu_ms_per_request"]["hit"]["plugin_server"])

    first = names[0]
    out: dict[str, Any] = {
        "baseline_variant": first,
        "hit_ops_vs_baseline": {n: ratio(hit_ops(n), hit_ops(first)) for n in names},
        "plugin_server_cpu_per_hit_vs_baseline": {
            n: ratio(plugin_cpu(n), plugin_cpu(first)) for n in names
        },
    }
    by_engine: dict[str, list[tuple[int, str]]] = {}
    for n in names:
        engine, sep, workers = n.partition("/")
        if sep:
            by_engine.setdefault(engine, []).append((int(workers), n))
    workers_ratios: dict[str, float] = {}
    for members in by_engine.values():
        members.sort()
        fewest = members[0][1]
        for _, n in members[1:]:
            workers_ratios[f"{n} vs {fewest}"] = ratio(hit_ops(n), hit_ops(fewest))
    out["hit_ops_more_workers"] = workers_ratios
    return out

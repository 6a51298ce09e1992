"""The rows of `BENCHMARKS.md`: each scenario's headline figures, as ratios against a
baseline measured in the same run.

A scenario's JSON report may carry its own ``"headline"`` list; for the scenarios that
predate that contract the rows are read here from the report's figures. A row is
``{"name", "value", "unit", "baseline", "target", "met"}`` (`Row`); ``target`` and ``met``
are None when the issue that asked for the scenario set no target.

Not guaranteed: a row for a figure the report lacks (a scenario that failed, or ran with
options that skip a part, yields fewer rows, never a made-up one).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypedDict

__all__ = ["Row", "rows_of"]


class Row(TypedDict):
    name: str
    value: float
    unit: str
    baseline: str
    target: str | None
    met: bool | None


def _row(
    name: str, value: Any, unit: str, baseline: str, target: str | None, met: bool | None
) -> Row | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    if not math.isfinite(value):
        return None
    return Row(name=name, value=float(value), unit=unit, baseline=baseline, target=target, met=met)


def _lookup(report: Mapping[str, Any]) -> list[Row | None]:
    default = report.get("product_default", "stream-unix")
    variant = report.get("variants", {}).get(default, {})
    targets = report.get("targets", {})
    p50_max, ops_min = targets.get("p50_ratio_max"), targets.get("throughput_ratio_min")
    return [
        _row(
            f"sidecar Lookup p50 ({default})",
            variant.get("p50_ratio"),
            "x",
            "a redis-py GET of the same 2 KB value",
            None if p50_max is None else f"<= {p50_max}",
            report.get("meets_p50_target"),
        ),
        _row(
            f"sidecar Lookup throughput, {report.get('threads', '?')} threads ({default})",
            variant.get("throughput_ratio"),
            "x",
            "redis-py GETs with as many threads",
            None if ops_min is None else f">= {ops_min}",
            report.get("meets_throughput_target"),
        ),
    ]


def _gateway(report: Mapping[str, Any]) -> list[Row | None]:
    targets = report.get("targets", {})
    rows: list[Row | None] = []
    for name, variant in report.get("variants", {}).items():
        figures = variant.get("figures", variant)
        ratios, meets = figures.get("ratios", {}), figures.get("meets", {})
        rows += [
            _row(
                f"hits/s, {name}",
                ratios.get("hit_ops_vs_no_plugin"),
                "x",
                "the same kongsim without the plugin (same clients)",
                f">= {targets.get('hit_ops_vs_no_plugin_min')}",
                meets.get("hit_ops_vs_no_plugin"),
            ),
            _row(
                f"hits/s vs a 10 ms origin, {name}",
                ratios.get("hit_ops_vs_10ms_upstream"),
                "x",
                "kongsim without the plugin in front of a 10 ms origin",
                f">= {targets.get('hit_ops_vs_10ms_upstream_min')}",
                meets.get("hit_ops_vs_10ms_upstream"),
            ),
        ]
    return rows


def _tiers(report: Mapping[str, Any]) -> list[Row | None]:
    return [
        _row(
            f"{tier} hit through the sidecar, p50",
            figures.get("p50_ratio"),
            "x",
            f"a direct {figures.get('direct_is', 'client')} read of the same value",
            None,
            None,
        )
        for tier, figures in report.get("tiers", {}).items()
    ]


def _invalidation(report: Mapping[str, Any]) -> list[Row | None]:
    rows: list[Row | None] = []
    for key, result in report.items():
        if not key.startswith("nodes_") or not isinstance(result, Mapping):
            continue
        nodes = key.removeprefix("nodes_")
        ratio = result.get("ratios", {}).get("event_p99/baseline_p99")
        rows.append(
            _row(
                f"purge event to every node, p99, {nodes} nodes",
                ratio,
                "x",
                "Redis generations alone (every node reads them on each lookup)",
                None,
                None,
            )
        )
    for target, met in report.get("targets", {}).items():
        rows.append(_row(f"target {target}", 1.0 if met else 0.0, "met", "-", target, bool(met)))
    return rows


def _swr(report: Mapping[str, Any]) -> list[Row | None]:
    return [
        _row(
            "slowest client while a stale entry refreshes, p50",
            report.get("ratios", {}).get("background/foreground_slowest_p50"),
            "x",
            "the same gateway refreshing in the foreground",
            None,
            None,
        )
    ]


def _faults(report: Mapping[str, Any]) -> list[Row | None]:
    rows: list[Row | None] = []
    for phase in report.get("phases", []):
        fault = phase.get("fault", "?")
        rows.append(
            _row(
                f"client errors while {fault} is down and back",
                phase.get("client_errors"),
                "errors",
                "-",
                "0",
                phase.get("client_errors") == 0 and not phase.get("crashed"),
            )
        )
        hits = phase.get("hit_ratio", {})
        before, after = hits.get("before"), hits.get("after")
        if before and after is not None:
            rows.append(
                _row(
                    f"hit ratio after {fault} came back",
                    round(after / before, 3),
                    "x",
                    "the hit ratio before the fault",
                    None,
                    None,
                )
            )
    return rows


_EXTRACTORS: dict[str, Callable[[Mapping[str, Any]], list[Row | None]]] = {
    "lookup": _lookup,
    "gateway": _gateway,
    "tiers": _tiers,
    "invalidation": _invalidation,
    "swr": _swr,
    "faults": _faults,
}


def rows_of(scenario: str, report: Mapping[str, Any]) -> list[Row]:
    """The headline rows of `scenario`'s `report`: its own ``headline`` list when it has
    one (rows without a finite value are left out), else what `_EXTRACTORS` reads."""
    own = report.get("headline")
    if isinstance(own, list):
        found = [
            _row(
                str(r.get("name", "?")),
                r.get("value"),
                str(r.get("unit", "")),
                str(r.get("baseline", "-")),
                r.get("target"),
                r.get("met"),
            )
            for r in own
            if isinstance(r, Mapping)
        ]
    else:
        found = _EXTRACTORS.get(scenario, lambda _: [])(report)
    return [r for r in found if r is not None]

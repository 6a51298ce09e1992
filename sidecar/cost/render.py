"""A `CostReport` as a readable table (`table`) or a JSON document (`as_json`). Pure.

Bytes are shown in binary units (KiB, MiB, GiB: the prices' GB is 2^30 bytes), money
with two decimals in the prices' currency (USD in the docs) and no symbol. The JSON keeps
raw numbers (bytes, requests, money per month) under stable keys; not guaranteed: that
the table's layout stays the same (parse the JSON).
"""

from __future__ import annotations

from typing import Any

from sidecar.cost.model import NODE_LOCAL_TIERS, CostReport, Flow

__all__ = ["as_json", "human_bytes", "table"]


def human_bytes(value: float) -> str:
    """`value` bytes in the largest binary unit that keeps it >= 1 (``512 B``, ``1.5 MiB``)."""
    sign = "-" if value < 0 else ""
    value = abs(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{sign}{value:.0f} {unit}" if unit == "B" else f"{sign}{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _money(value: float) -> str:
    return f"{value:,.2f}"


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f} %" if whole > 0 else "-"


def table(report: CostReport, notes: list[str] | None = None) -> str:
    """The report as text for a terminal (80 columns)."""
    p = report.prices
    out = [
        f"Strata cost report: {report.nodes} node(s), counters over {report.window_s:,.0f} s, "
        "extrapolated to 30 days",
        f"Prices: RAM {p.ram_gb_month:g}/GB-month, disk {p.disk_gb_month:g}/GB-month, origin "
        f"{p.origin_per_million:g}/million requests, egress {p.egress_per_gb:g}/GB "
        "(GB = 2^30 bytes)",
        "",
        f"{'Bytes held now, by tier':<40}{'held':>14}{'per month':>14}",
    ]
    for t in report.tiers:
        label = f"  {t.tier} ({t.kind}{', whole server' if t.whole_server else ''})"
        out.append(f"{label:<40}{human_bytes(t.held_bytes):>14}{_money(t.monthly):>14}")
    m = report.memory_now
    if m is not None:
        out += [
            "",
            "Memory tier now (every node)",
            f"  {'logical (the naive copy of its entries)':<38}{human_bytes(m.logical):>14}",
            f"  {'bodies, one per key':<38}{human_bytes(m.body):>14}",
            f"  {'saved by deduplication':<38}{human_bytes(m.body - m.body_distinct):>14}"
            f"{_pct(m.body - m.body_distinct, m.body):>10}",
            f"  {'saved by compression':<38}{human_bytes(m.body_distinct - m.body_stored):>14}"
            f"{_pct(m.body_distinct - m.body_stored, m.body):>10}",
        ]
    if report.written:
        out += [
            "",
            f"{'Written in the window':<26}{'logical':>13}{'dedup saved':>14}"
            f"{'compr. saved':>14}{'stored':>13}",
        ]
        for tier, w in sorted(report.written.items()):
            out.append(
                f"  {tier:<24}{human_bytes(w.logical):>13}{human_bytes(w.dedup_saved):>14}"
                f"{human_bytes(w.compression_saved):>14}{human_bytes(w.stored):>13}"
            )
    out += _admission(report)

    def flow(label: str, f: Flow, fmt: Any) -> str:
        return f"  {label:<38}{fmt(f.window):>14}{fmt(f.month):>14}"

    out += [
        "",
        f"{'Traffic':<40}{'window':>14}{'per month':>14}",
        flow("requests (cacheable)", report.requests, _count),
        flow("origin requests avoided (hits)", report.origin_requests_avoided, _count),
        flow("origin requests", report.origin_requests, _count),
        flow("origin egress avoided", report.egress_avoided_bytes, human_bytes),
        flow("origin egress (estimated)", report.egress_bytes, human_bytes),
        "",
        f"{'Monthly cost':<32}{'Strata':>12}{'naive way':>12}{'no cache':>12}",
        f"  {'storage':<30}{_money(report.strata_storage):>12}"
        f"{_money(report.naive_storage):>12}{_money(0):>12}",
        f"  {'origin requests':<30}{_money(report.strata_origin):>12}"
        f"{_money(report.strata_origin):>12}{_money(report.no_cache_origin):>12}",
        f"  {'origin egress':<30}{_money(report.strata_egress):>12}"
        f"{_money(report.strata_egress):>12}{_money(report.no_cache_egress):>12}",
        f"  {'total':<30}{_money(report.strata_total):>12}"
        f"{_money(report.naive_total):>12}{_money(report.no_cache_total):>12}",
        "",
        f"The naive way: {human_bytes(report.naive_bytes_per_node)} per node x "
        f"{report.nodes} node(s), in RAM.",
    ]
    out.append(_verdict(report))
    out += ["", "Assumptions:"]
    out += [f"  - {a}" for a in (*report.assumptions, *(notes or []))]
    return "\n".join(out)


def _admission(report: CostReport) -> list[str]:
    """The admission section: refused, and (when every sidecar said) promoted and kept out."""
    if not report.refused:
        return []
    kept = report.kept_out
    if kept is None:
        out = ["", "Refused by admission in the window (logical bytes; not net of promotion)"]
        return out + [f"  {t:<38}{human_bytes(v):>14}" for t, v in sorted(report.refused.items())]
    out = [
        "",
        f"{'Admission in the window (logical bytes)':<40}{'refused':>10}"
        f"{'promoted later':>16}{'kept out':>14}",
    ]
    for tier, value in sorted(report.refused.items()):
        promoted = report.promoted.get(tier, 0.0)
        later = "-" if tier in NODE_LOCAL_TIERS else human_bytes(promoted)
        out.append(
            f"  {tier:<38}{human_bytes(value):>10}{later:>16}{human_bytes(kept.get(tier, 0.0)):>14}"
        )
    return out


def _verdict(report: CostReport) -> str:
    """One sentence: how much less (or more) Strata costs a month than the naive way."""
    saving = report.saving_vs_naive
    if round(saving, 2) == 0:
        head = "Strata against the naive way: the same per month"
    else:
        head = (
            f"Strata against the naive way: {_money(abs(saving))} "
            f"{'less' if saving > 0 else 'more'} per month"
        )
    ratios = [
        f"{value:.2f}x its {what}"
        for value, what in (
            (report.ratio_vs_naive, "total"),
            (report.storage_ratio_vs_naive, "storage"),
        )
        if value is not None
    ]
    return head + (f" ({', '.join(ratios)})." if ratios else ".")


def _flow(f: Flow) -> dict[str, float]:
    return {"window": f.window, "month": f.month}


def as_json(report: CostReport, notes: list[str] | None = None) -> dict[str, Any]:
    """The report as plain JSON types."""
    m = report.memory_now
    return {
        "window_seconds": report.window_s,
        "nodes": report.nodes,
        "prices": {
            "ram_gb_month": report.prices.ram_gb_month,
            "disk_gb_month": report.prices.disk_gb_month,
            "origin_per_million": report.prices.origin_per_million,
            "egress_per_gb": report.prices.egress_per_gb,
        },
        "tiers": [
            {
                "tier": t.tier,
                "kind": t.kind,
                "held_bytes": t.held_bytes,
                "monthly": t.monthly,
                "whole_server": t.whole_server,
            }
            for t in report.tiers
        ],
        "memory_now": None
        if m is None
        else {
            "logical_bytes": m.logical,
            "body_bytes": m.body,
            "body_distinct_bytes": m.body_distinct,
            "body_stored_bytes": m.body_stored,
            "dedup_saved_bytes": m.body - m.body_distinct,
            "compression_saved_bytes": m.body_distinct - m.body_stored,
        },
        "written": {
            tier: {
                "logical_bytes": w.logical,
                "body_bytes": w.body,
                "body_new_bytes": w.body_new,
                "body_stored_bytes": w.body_stored,
                "stored_bytes": w.stored,
                "dedup_saved_bytes": w.dedup_saved,
                "compression_saved_bytes": w.compression_saved,
            }
            for tier, w in sorted(report.written.items())
        },
        "admission_refused_bytes": dict(sorted(report.refused.items())),
        "promoted_bytes": dict(sorted(report.promoted.items())),
        "admission_kept_out_bytes": None
        if report.kept_out is None
        else dict(sorted(report.kept_out.items())),
        "requests": _flow(report.requests),
        "origin_requests_avoided": _flow(report.origin_requests_avoided),
        "origin_requests": _flow(report.origin_requests),
        "egress_avoided_bytes": _flow(report.egress_avoided_bytes),
        "egress_bytes": _flow(report.egress_bytes),
        "monthly": {
            "strata": {
                "storage": report.strata_storage,
                "origin": report.strata_origin,
                "egress": report.strata_egress,
                "total": report.strata_total,
            },
            "naive": {
                "storage": report.naive_storage,
                "origin": report.strata_origin,
                "egress": report.strata_egress,
                "total": report.naive_total,
                "bytes_per_node": report.naive_bytes_per_node,
            },
            "no_cache": {
                "origin": report.no_cache_origin,
                "egress": report.no_cache_egress,
                "total": report.no_cache_total,
            },
            "saving_vs_naive": report.saving_vs_naive,
            "ratio_vs_naive": report.ratio_vs_naive,
            "storage_ratio_vs_naive": report.storage_ratio_vs_naive,
        },
        "assumptions": [*report.assumptions, *(notes or [])],
    }

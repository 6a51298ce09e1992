"""What one phase of the fault suite reports: the instants it marked (`Marks`), its JSON
object (`phase_report`), and all phases as a markdown table (`markdown`).

Windows of the load's samples are cut at the marks: steady (before the fault), fault (until
the server's return), recovery (until the phase's end) and, when the suite waited for the
hit ratio to come back, settle. Time to recover is from the server's return to the first
1 s window whose hit ratio is within the tolerance of the steady one.

Not guaranteed: a hit ratio for a window without requests (it is None, "-" in the table).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.faults_load import Timeline


@dataclass
class Marks:
    """Instants of one phase (time.monotonic()) and what happened in it."""

    steady: float
    fault: float = 0.0
    back: float = 0.0  # the server's (or the new sidecar's) return
    end: float = 0.0
    repaired_at: float | None = None
    settled_at: float = 0.0
    settled: bool = True
    notes: list[str] = field(default_factory=list)
    origin: dict[str, int] = field(default_factory=dict)


def phase_report(
    fault: str,
    marks: Marks,
    timeline: Timeline,
    tolerance: float,
    crashes: list[str],
    sidecar_rss: int | None,
    memory_max_bytes: str,
) -> dict[str, Any]:
    """The JSON object of the phase that injected `fault`: `crashes` are the processes that
    exited unasked or wrongly, `sidecar_rss` the current sidecar's resident set (None when
    there is none)."""
    steady = timeline.window(marks.steady, marks.fault)
    during = timeline.window(marks.fault, marks.back)
    after = timeline.window(marks.back, marks.end)
    windows = {"steady": steady, "fault": during, "recovery": after}
    if marks.settled_at > marks.end + 0.05:
        windows["settle"] = timeline.window(marks.end, marks.settled_at)
    target = (steady.hit_ratio or 0.0) - tolerance
    recover = timeline.time_to_recover(marks.back, marks.end, target)
    o = marks.origin
    return {
        "fault": fault,
        "client_errors": sum(w.errors for w in windows.values()),
        "bypasses_fault": during.bypasses,
        "bypasses_recovery": after.bypasses,
        "hit_ratio": {
            "before": _round(steady.hit_ratio),
            "during": _round(during.hit_ratio),
            "after": _round(after.hit_ratio),
        },
        "recover_s": recover,
        "fault_s": round(marks.back - marks.fault, 2),
        "origin_requests": {
            "steady": o["fault"] - o["steady"],
            "fault": o["back"] - o["fault"],
            "recovery": o["end"] - o["back"],
        },
        "crashed": bool(crashes),
        "crashes": crashes,
        "repaired": marks.repaired_at is not None,
        "settle_s": round(marks.settled_at - marks.end, 2) if marks.settled else None,
        "sidecar_rss_mib": None if sidecar_rss is None else round(sidecar_rss / 2**20, 1),
        "memory_max_bytes": memory_max_bytes,
        "windows": {k: w.as_dict() for k, w in windows.items()},
        "notes": marks.notes,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def markdown(reports: Sequence[dict[str, Any]]) -> str:
    rows = [
        "| fault | client errors | bypasses fault / recovery | hit % before / during / after "
        "| recover s | down s | origin req. fault / recovery | crash | repaired "
        "| sidecar RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        h, o = r["hit_ratio"], r["origin_requests"]
        recover = "never" if r["recover_s"] is None else f"{r['recover_s']:.1f}"
        crash = "; ".join(r["crashes"]) if r["crashed"] else "no"
        rows.append(
            f"| {r['fault']} | {r['client_errors']} | {r['bypasses_fault']} / "
            f"{r['bypasses_recovery']} | {_pct(h['before'])} / {_pct(h['during'])} / "
            f"{_pct(h['after'])} | {recover} | {r['fault_s']:.1f} | {o['fault']} / "
            f"{o['recovery']} | {crash} | {'yes' if r['repaired'] else 'no'} | "
            f"{r['sidecar_rss_mib']} |"
        )
    return "\n".join(rows)

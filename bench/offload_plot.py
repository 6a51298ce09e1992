"""The picture of `python -m bench offload`: origin requests per 1,000 against RAM, per trace.

One panel per trace (baseline, Strata "architecture", Strata "as stored", and the cold-miss
floors: what infinite per-node caches pay, once per node and key, which is also Strata's
with ``shared_min_hits`` = 2, and a shared cache's, once per key), and one for the memory
share sweep at the headline RAM size. Not guaranteed: anything beyond the figures in
the JSON it is drawn from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_LINES = (
    ("baseline", "r-s", "per-node LRUs (Kong proxy-cache)"),
    ("architecture", "b-o", "Strata, same bytes"),
    ("as_stored", "g-^", "Strata, as stored"),
)


def _per_1000(row: dict[str, Any], line: str) -> float | None:
    if line == "baseline":
        return float(row["baseline"]["origin_per_1000"])
    strata = row["strata"].get(line)
    return None if strata is None else float(strata["origin_per_1000"])


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    """Draw `results` (the report's ``traces``) to `path` (PNG)."""
    import matplotlib  # noqa: PLC0415 - only when a picture is asked for

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    names = list(results)
    cols = 3
    rows = (len(names) + 1 + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.4 * rows), squeeze=False)
    flat = list(axes.flat)
    for ax, name in zip(flat, names, strict=False):
        xs = [100 * r["fraction"] for r in results[name]["rows"]]
        for line, style, label in _LINES:
            ys = [_per_1000(r, line) for r in results[name]["rows"]]
            if all(y is not None for y in ys):
                ax.plot(xs, ys, style, label=label)
        infinite = results[name]["infinite_ram"]
        for floor, style, label in (
            ("baseline", "k:", "cold floor: once per node and key"),
            ("strata_shared_min_hits_1", "k-.", "cold floor: once per key"),
        ):
            ax.axhline(
                float(infinite[floor]["origin_per_1000"]),
                linestyle=style[1:],
                color="k",
                linewidth=0.8,
                label=label,
            )
        ax.set_title(name)
        ax.set_xscale("log")
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.minorticks_off()
        ax.set_xlabel("total RAM, % of distinct naive bytes")
        ax.set_ylabel("origin requests / 1,000")
        ax.set_ylim(0, 1000)
        ax.grid(True, alpha=0.3)
    flat[0].legend(loc="upper right", fontsize="small")
    sweep = flat[len(names)]
    for name, result in results.items():
        splits = result.get("sweeps", {}).get("memory_share_at_headline_fraction", {})
        for mode, style in (("architecture", "-o"), ("as_stored", "--^")):
            xs = [100 * float(s) for s in splits if mode in splits[s]]
            if xs:
                ys = [splits[s][mode] for s in splits if mode in splits[s]]
                sweep.plot(xs, ys, style, label=f"{name}, {mode.replace('_', ' ')}")
    sweep.set_title("memory tier's share of a node's RAM")
    sweep.set_xlabel("% of the node's RAM in its memory tier")
    sweep.set_ylabel("Strata / baseline origin requests")
    sweep.grid(True, alpha=0.3)
    sweep.legend(fontsize="small")
    for ax in flat[len(names) + 1 :]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)

"""Run every scenario and write BENCHMARKS.md: every ratio side by side, from one run.

``python -m bench all`` runs each scenario as its own process (``python -m bench NAME``, so
one that crashes or hangs does not take the others down), keeps each one's output in
``.run/bench/NAME.json`` (stderr in ``NAME.err``), asks the scenarios that draw a picture to
draw it under ``docs/benchmarks/``, then renders `bench.benchmarks_md` into
``BENCHMARKS.md`` with the machine, the date and the commit. ``make bench`` starts the
services first and runs this.

Not guaranteed: that the figures hold on another machine or another day (they are ratios
against baselines measured in the same run, on whatever else the machine is doing); that a
scenario which needs the services finds them (it fails, and its failure is in the table).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import benchmarks_md

#: Every scenario, cheapest first; `make bench` runs them all.
SCENARIOS = (
    "hit-ratio",
    "offload",
    "memory",
    "stampede",
    "lookup",
    "tiers",
    "gateway",
    "invalidation",
    "swr",
    "faults",
)
#: The longest one scenario may take before it is stopped and reported as timed out.
SCENARIO_TIMEOUT_S = 3600.0


@dataclass
class Outcome:
    """What one scenario's process left: its exit code, its JSON report(s), its time."""

    scenario: str
    rc: int
    seconds: float
    report: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    pngs: list[str] = field(default_factory=list)
    raw: str = ""


def documents(text: str) -> list[dict[str, Any]]:
    """Every JSON object in `text` that starts at the beginning of a line (scenarios print
    one pretty-printed report, `faults` one object per phase), in order."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    pos = 0
    while pos < len(text):
        start = text.find("{", pos)
        if start < 0:
            break
        if start and text[start - 1] != "\n":
            pos = start + 1
            continue
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            pos = start + 1
            continue
        if isinstance(value, dict):
            found.append(value)
        pos = end
    return found


def report_of(scenario: str, text: str) -> dict[str, Any]:
    """The scenario's report: its one JSON document, or its documents as ``phases``."""
    docs = documents(text)
    if len(docs) == 1:
        return docs[0]
    if not docs:
        return {}
    return {"scenario": scenario, "phases": docs}


def _options(scenario: str) -> set[str]:
    """The command-line options `scenario` understands (read from its own parser)."""
    from bench.__main__ import build_parser  # noqa: PLC0415 - avoids an import cycle

    parser = build_parser()
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        choices = getattr(action, "choices", None) or {}
        if scenario in choices:
            return set(choices[scenario]._option_string_actions)
    raise SystemExit(f"unknown scenario {scenario!r} (one of: {', '.join(SCENARIOS)})")


def command(scenario: str, quick: bool, plots: Path) -> tuple[list[str], list[str]]:
    """The command that runs `scenario`, and the pictures it is asked to draw."""
    options = _options(scenario)
    cmd = [sys.executable, "-m", "bench", scenario]
    pngs: list[str] = []
    if quick and "--quick" in options:
        cmd.append("--quick")
    if "--png" in options:
        png = str(plots / f"{scenario.replace('-', '_')}.png")
        cmd += ["--png", png]
        pngs.append(png)
    return cmd, pngs


def run_one(scenario: str, quick: bool, plots: Path, out: Path, timeout_s: float) -> Outcome:
    """Run `scenario` to completion (or `timeout_s`) and keep what it printed in `out`."""
    cmd, pngs = command(scenario, quick, plots)
    stem = scenario.replace("-", "_")
    err_path = out / f"{stem}.err"
    print(f"bench all: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    started = time.monotonic()
    with err_path.open("wb") as err:
        try:
            done = subprocess.run(
                cmd, check=False, stdout=subprocess.PIPE, stderr=err, timeout=timeout_s
            )
            rc, stdout = done.returncode, done.stdout.decode(errors="replace")
        except subprocess.TimeoutExpired as exc:
            rc, stdout = -1, (exc.stdout or b"").decode(errors="replace")
    seconds = round(time.monotonic() - started, 1)
    (out / f"{stem}.out").write_text(stdout)
    report = report_of(scenario, stdout)
    raw = out / f"{stem}.json"
    raw.write_text(json.dumps(report, indent=2))
    error = ""
    if rc != 0:
        tail = err_path.read_text(errors="replace").strip().splitlines()[-1:] or ["(no stderr)"]
        error = "timed out" if rc == -1 else f"exit {rc}: {tail[0][:500]}"
    elif not report:
        error = "printed no JSON report"
    drawn = [p for p in pngs if Path(p).is_file()]
    return Outcome(scenario, rc, seconds, report, error, drawn, str(raw))


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], check=False, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine() -> dict[str, Any]:
    """Where and when the run happened, and of which code."""
    dirty = [
        line
        for line in _git("status", "--porcelain").splitlines()
        if not line[3:].startswith(("BENCHMARKS.md", "docs/benchmarks/"))
    ]
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _git("rev-parse", "--short=12", "HEAD") or "unknown",
        "uncommitted_changes": bool(dirty),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _mem_total_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--only", default="", help=f"comma list, of: {', '.join(SCENARIOS)}")
    p.add_argument("--quick", action="store_true", help="each scenario's smoke-sized run")
    p.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"), help="the report")
    p.add_argument("--plots", type=Path, default=Path("docs/benchmarks"), help="pictures")
    p.add_argument("--results", type=Path, default=Path(".run/bench"), help="raw outputs")
    p.add_argument("--timeout", type=float, default=SCENARIO_TIMEOUT_S, help="per scenario, s")


def run(args: argparse.Namespace) -> int:
    names = [n for n in args.only.split(",") if n] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"bench all: unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
        return 2
    args.plots.mkdir(parents=True, exist_ok=True)
    args.results.mkdir(parents=True, exist_ok=True)
    outcomes = [run_one(n, args.quick, args.plots, args.results, args.timeout) for n in names]
    where = machine()
    text = benchmarks_md.render(outcomes, where, quick=args.quick, base=args.out.parent)
    args.out.write_text(text)
    failed = [o.scenario for o in outcomes if o.error]
    summary = {
        "scenario": "all",
        "machine": where,
        "out": str(args.out),
        "scenarios": {o.scenario: {"rc": o.rc, "seconds": o.seconds} for o in outcomes},
        "failed": failed,
    }
    print(json.dumps(summary, indent=2))
    return 1 if failed else 0

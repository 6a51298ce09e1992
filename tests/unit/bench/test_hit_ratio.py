"""``python -m bench hit-ratio --quick``: every trace, every policy, a verdict and a PNG."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.hit_ratio import FRACTIONS, TRACES

ROOT = Path(__file__).resolve().parents[3]


def test_the_quick_run_reports_every_trace_and_size_and_draws_the_plot(tmp_path: Path) -> None:
    png = tmp_path / "hit_ratio.png"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "hit-ratio", "--quick", "--png", str(png)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    report = json.loads(done.stdout)
    assert set(report["results"]) == {spec.name for spec in TRACES}
    for name, rows in report["results"].items():
        assert [row["fraction"] for row in rows] == list(FRACTIONS)
        for row in rows:
            for policy in ("w_tinylfu", "lru", "belady", "oracle_lfu"):
                assert 0.0 <= row[policy]["hit"] <= 1.0
            if report["belady_is_optimum"][name]:  # equal sizes: nothing online beats it
                for policy in ("w_tinylfu", "lru", "oracle_lfu"):
                    assert row[policy]["hit"] <= row["belady"]["hit"], (name, row)
    # the memory tier's policy is never worse than LRU here (the first target of issue 15)
    assert report["meets"]["ge_lru_everywhere"], report["w_tinylfu_minus_lru_worst"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

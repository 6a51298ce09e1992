"""Smoke test of the benchmarks: each `python -m bench SCENARIO --quick` runs to the end and
prints its JSON report. Shape only: no timing thresholds (this machine is shared and noisy).

`bench tiers` needs Redis and PostgreSQL from `make services-up` (`make test` starts them).
Each run is a process group of its own, so a run that hangs is stopped with everything it
started. The three runs take ~20 s together on a 2-core machine.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from tests.support.process_group import run_group
from tools import services

pytestmark = pytest.mark.e2e
#: Per run; below the suite's 120 s per-test timeout, leaving room to stop a hung run.
RUN_TIMEOUT_S = 90.0
SUMMARY_KEYS = ("p50_us", "p99_us", "ops_s", "n")


def run_bench(*argv: str, timeout_s: float = RUN_TIMEOUT_S) -> dict[str, Any]:
    """`python -m bench ARGV` from the repo root; its JSON report (exit 0 asserted)."""
    done = run_group([sys.executable, "-m", "bench", *argv], timeout_s)
    assert done.returncode == 0, (
        f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )
    return report_of(done.stdout)


def report_of(stdout: str) -> dict[str, Any]:
    """The last top-level JSON object printed (`json.dumps(..., indent=2)`: a "{" line)."""
    lines = stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if line == "{"]
    assert starts, f"no JSON report in the output:\n{stdout}"
    report: dict[str, Any] = json.loads("\n".join(lines[starts[-1] :]))
    return report


def assert_positive(where: str, data: Mapping[str, Any], keys: Iterable[str]) -> None:
    for key in keys:
        assert key in data, f"{where}: no {key!r} in {data}"
        value = data[key]
        assert isinstance(value, int | float) and not isinstance(value, bool), (
            f"{where}.{key} is not a number: {value!r}"
        )
        assert math.isfinite(value) and value > 0, f"{where}.{key} = {value!r}, expected > 0"


def assert_summary(where: str, summary: Mapping[str, Any]) -> None:
    assert_positive(where, summary, SUMMARY_KEYS)


def test_bench_tiers_quick() -> None:
    env = services.load_env()
    missing = [k for k in ("STRATA_TEST_REDIS_URL", "STRATA_TEST_POSTGRES_DSN") if not env.get(k)]
    if missing:
        pytest.fail(
            f"`bench tiers` needs Redis and PostgreSQL: {', '.join(missing)} not in "
            f"{services.resolve_run_dir() / 'services.env'}; run `make services-up` first "
            "(`make test` does)"
        )
    report = run_bench("tiers", "--quick")
    assert report["scenario"] == "tiers"
    assert_positive("tiers", report, ("body_bytes", "n", "rounds"))
    assert report["namespace"].startswith("bench-tiers-")
    assert set(report["tiers"]) == {"memory", "redis", "postgres"}
    for name, tier in report["tiers"].items():
        assert_summary(f"{name}.sidecar", tier["sidecar"])
        assert_summary(f"{name}.direct", tier["direct"])
        assert_positive(name, tier, ("p50_ratio", "p99_ratio", "ops_ratio"))
        assert isinstance(tier["direct_is"], str) and tier["direct_is"]
        assert len(tier["rounds_p50_us"]["sidecar"]) == report["rounds"]
    # The memory tier's baseline is the redis-py GET measured for the Redis tier.
    assert report["tiers"]["memory"]["direct"] == report["tiers"]["redis"]["direct"]
    for name in ("redis", "postgres"):
        assert_positive(name, report["tiers"][name], ("stored_value_bytes",))


def test_bench_gateway_quick() -> None:
    report = run_bench("gateway", "--quick")
    assert report["scenario"] == "gateway"
    assert list(report["variants"]) == ["kong-pdk/1", "strata/1", "strata/2"]
    scenarios = {"no_plugin", "hit", "miss", "no_plugin_upstream_10ms"}
    for name, variant in report["variants"].items():
        for section in ("sequential", f"clients_{report['clients']}"):
            assert set(variant[section]) == scenarios, f"{name}.{section}"
            for scenario, summary in variant[section].items():
                assert_summary(f"{name}.{section}.{scenario}", summary)
        for kind in ("hit", "miss"):
            # kongsim and the plugin server work for every request; the sidecar for a miss
            # (a hot hit is answered from the plugin server's near-cache)
            busy = (
                ("kongsim", "plugin_server", "sidecar")
                if kind == "miss"
                else ("kongsim", "plugin_server")
            )
            assert_positive(f"{name}.cpu.{kind}", variant["cpu_ms_per_request"][kind], busy)
            assert variant["cpu_ms_per_request"][kind]["sidecar"] >= 0
            assert_positive(
                f"{name}.pdk.{kind}", variant["pdk"][kind], ("step_round_trips", "rpcs")
            )
            assert "log" in variant["pdk"][kind]["by_phase"]  # counted over every phase
        assert_positive(f"{name}.store_visibility", variant["store_visibility"], ("n", "p99_ms"))
        assert_positive(
            f"{name}.ratios",
            variant["ratios"],
            ("hit_ops_vs_no_plugin", "hit_ops_vs_10ms_upstream"),
        )
        assert all(isinstance(v, bool) for v in variant["meets"].values())
    assert set(report["scaling"]["hit_ops_vs_baseline"]) == set(report["variants"])
    assert "strata/2 vs strata/1" in report["scaling"]["hit_ops_more_workers"]


def test_bench_lookup_quick_stream_unix() -> None:
    report = run_bench("lookup", "--quick", "--variants", "stream-unix")
    assert report["scenario"] == "lookup"
    assert set(report["variants"]) == {"stream-unix"}
    variant = report["variants"]["stream-unix"]
    for section in ("sequential", f"threads_{report['threads']}"):
        for side in ("sidecar", "redis"):
            assert_summary(f"{section}.{side}", variant[section][side])
    assert_positive("stream-unix", variant, ("p50_ratio", "p99_ratio", "throughput_ratio"))
    assert isinstance(report["meets_p50_target"], bool)
    assert isinstance(report["meets_throughput_target"], bool)


def test_bench_swr_quick() -> None:
    report = run_bench("swr", "--quick")
    assert report["scenario"] == "swr"
    for mode in ("foreground", "background"):
        assert_positive(mode, report[mode], ("slowest_p50_ms", "all_p50_ms", "rounds"))
    # the behaviour the figure is about, as a ratio within the run: with the refresh in the
    # background nobody waits for the origin's delay; in the foreground the lease holder does
    assert report["ratios"]["background/foreground_slowest_p50"] < 1

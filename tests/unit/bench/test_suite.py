"""`python -m bench all`: reading each scenario's output, its headline rows and BENCHMARKS.md."""

from __future__ import annotations

import json
from pathlib import Path

from bench import benchmarks_md, headlines, suite
from bench.suite import Outcome


def test_documents_reads_a_pretty_report_and_one_object_per_line_with_text_around() -> None:
    text = (
        "starting\n"
        + json.dumps({"a": {"b": 1}}, indent=2)
        + "\n| table | {not json} |\n"
        + json.dumps({"fault": "redis"})
        + "\n"
        + json.dumps({"fault": "sidecar"})
        + "\n"
    )
    assert suite.documents(text) == [{"a": {"b": 1}}, {"fault": "redis"}, {"fault": "sidecar"}]
    assert suite.report_of("faults", text)["phases"][2] == {"fault": "sidecar"}
    assert suite.report_of("x", json.dumps({"scenario": "x"})) == {"scenario": "x"}
    assert suite.report_of("x", "Traceback ...\n") == {}


def test_command_asks_for_quick_and_a_picture_only_where_the_scenario_has_them() -> None:
    cmd, pngs = suite.command("hit-ratio", True, Path("plots"))
    assert cmd[1:] == ["-m", "bench", "hit-ratio", "--quick", "--png", "plots/hit_ratio.png"]
    assert pngs == ["plots/hit_ratio.png"]
    cmd, pngs = suite.command("invalidation", True, Path("plots"))
    assert cmd[1:] == ["-m", "bench", "invalidation"] and pngs == []


def test_every_scenario_of_the_suite_is_a_bench_scenario() -> None:
    for name in suite.SCENARIOS:
        assert suite.command(name, False, Path("p"))[0][3] == name


def test_a_scenario_s_own_headline_is_taken_and_rows_without_a_finite_value_are_dropped() -> None:
    report = {
        "headline": [
            {
                "name": "a",
                "value": 0.4,
                "unit": "x",
                "baseline": "b",
                "target": "<= 0.5",
                "met": True,
            },
            {"name": "nan", "value": float("nan"), "unit": "x", "baseline": "b"},
            {"name": "none", "value": None, "unit": "x", "baseline": "b"},
        ]
    }
    rows = headlines.rows_of("offload", report)
    assert [r["name"] for r in rows] == ["a"]
    assert rows[0]["met"] is True


def test_rows_are_read_from_the_reports_of_the_older_scenarios() -> None:
    lookup = {
        "product_default": "stream-unix",
        "threads": 16,
        "targets": {"p50_ratio_max": 1.5, "throughput_ratio_min": 0.7},
        "variants": {"stream-unix": {"p50_ratio": 3.3, "throughput_ratio": 0.48}},
        "meets_p50_target": False,
        "meets_throughput_target": False,
    }
    rows = headlines.rows_of("lookup", lookup)
    assert [(r["value"], r["met"]) for r in rows] == [(3.3, False), (0.48, False)]
    faults = {
        "phases": [
            {
                "fault": "redis",
                "client_errors": 0,
                "crashed": False,
                "hit_ratio": {"before": 0.8, "during": 0.5, "after": 0.76},
            },
            {"fault": "sidecar", "client_errors": 3, "crashed": False, "hit_ratio": {}},
        ]
    }
    rows = headlines.rows_of("faults", faults)
    assert rows[0]["name"] == "client errors while redis is down and back"
    assert (rows[0]["value"], rows[0]["met"]) == (0.0, True)
    assert rows[1]["value"] == 0.95
    assert rows[2]["met"] is False and rows[2]["value"] == 3.0
    swr = {"ratios": {"background/foreground_slowest_p50": 0.069}}
    assert headlines.rows_of("swr", swr)[0]["value"] == 0.069
    assert headlines.rows_of("swr", {}) == []


def test_benchmarks_md_names_the_machine_the_commit_every_row_and_every_failure(
    tmp_path: Path,
) -> None:
    png = tmp_path / "docs" / "benchmarks" / "hit_ratio.png"
    png.parent.mkdir(parents=True)
    png.write_bytes(b"png")
    ok = Outcome(
        "swr", 0, 12.0, {"ratios": {"background/foreground_slowest_p50": 0.07}}, pngs=[str(png)]
    )
    failed = Outcome("stampede", 1, 3.0, {}, error="exit 1: services are down")
    where = {
        "date": "2026-12-06 12:00 UTC",
        "commit": "abc123",
        "uncommitted_changes": True,
        "cpu": "cpu",
        "cores": 2,
        "memory_gib": 8.0,
        "kernel": "6",
        "python": "3.11",
    }
    text = benchmarks_md.render([ok, failed], where, quick=False, base=tmp_path)
    assert "`abc123 (with uncommitted changes)`" in text
    assert "| `swr` | slowest client while a stale entry refreshes, p50 | 0.07x |" in text
    assert "| `stampede` | **failed**: exit 1: services are down |" in text
    assert "![swr](docs/benchmarks/hit_ratio.png)" in text
    assert "Smoke-sized" not in text

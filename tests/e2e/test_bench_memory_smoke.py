"""Smoke test of `python -m bench memory --quick`: runs to the end and prints its JSON
report with positive byte counts for both RAM tiers, where memory is paid (a real sidecar's
RSS, Redis' used_memory) and in the heap breakdown, and its headline rows. Shape and sanity
only (positive, finite): no ratio threshold.

Needs Redis from `make services-up` (`make test` starts it) for the Redis half.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.test_bench_smoke import assert_positive, run_bench
from tools import services

pytestmark = pytest.mark.e2e

BYTES_KEYS = ("naive_bytes", "compression_only_bytes", "strata_bytes", "ratio")
HEADLINE_FIELDS = {"name", "value", "unit", "baseline", "target", "met"}


def test_bench_memory_quick() -> None:
    if not services.load_env().get("STRATA_TEST_REDIS_URL"):
        pytest.fail("`bench memory` needs Redis: run `make services-up` first")
    report = run_bench("memory", "--quick")
    assert report["scenario"] == "memory"
    assert report["quick"] is True
    corpus = report["corpus"]
    assert_positive("corpus", corpus, ("responses", "distinct_bodies", "body_bytes_mean"))
    assert corpus["distinct_bodies"] < corpus["responses"]  # the corpus has duplicates
    assert_positive("memory", report["memory"], (*BYTES_KEYS, "entries", "distinct_bodies"))
    assert report["memory"]["entries"] == corpus["responses"]
    assert_positive("redis", report["redis"], (*BYTES_KEYS, "keys", "body_keys"))
    for tier in ("memory", "redis"):
        assert isinstance(report[tier]["meets_target"], bool)
        for share in ("share_saved_by_layout_and_compression", "share_saved_by_dedup"):
            assert isinstance(report[tier][share], float)
        assert_positive(
            f"per_response.{tier}", report["per_response_bytes"][tier], ("naive", "strata")
        )
    assert_positive(
        "decompression",
        report["decompression_2kb_hit"],
        ("body_bytes", "stored_bytes", "hit_compressed_us", "decompress_only_us"),
    )
    assert_paid(report)


def assert_paid(report: dict[str, Any]) -> None:
    """The measurements where memory is paid, the heap breakdown and the headline rows."""
    responses = report["corpus"]["responses"]
    rss = report["paid"]["sidecar_rss"]
    assert rss["responses"] == responses
    assert_positive(
        "paid.sidecar_rss",
        rss,
        (
            "baseline_rss_bytes",
            "rss_bytes_per_response",
            "counted_bytes_per_response",
            "naive_bytes_per_response",
            "rss_over_counted",
            "rss_over_naive",
            "heap_bytes_per_response",
            "rss_over_heap",
        ),
    )
    # a response costs the process more than nothing and less than its raw body and more
    assert rss["rss_bytes_per_response"] < 10 * rss["naive_bytes_per_response"]
    used = report["paid"]["redis_used_memory"]
    assert_positive(
        "paid.redis_used_memory",
        used,
        ("strata_bytes_per_response", "naive_bytes_per_response", "ratio", "strata_keys"),
    )
    assert used["strata_keys"] >= responses  # one entry key per response, plus bodies
    assert isinstance(used["noise_bytes"], int) and used["noise_bytes"] >= 0
    heap = report["heap_breakdown"]
    assert_positive(
        "heap_breakdown",
        heap,
        ("heap_bytes_per_response", "walked_bytes_per_response", "counted_bytes_per_response"),
    )
    assert_positive(
        "heap_breakdown.components",
        heap["components_bytes_per_response"],
        ("bodies", "headers", "keys"),
    )
    rows = report["headline"]
    assert len(rows) == 5
    for row in rows:
        assert set(row) == HEADLINE_FIELDS, row
        assert_positive(f"headline {row['name']!r}", row, ("value",))
        assert isinstance(row["met"], bool)

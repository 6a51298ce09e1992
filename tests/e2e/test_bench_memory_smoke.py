"""Smoke test of `python -m bench memory --quick`: runs to the end and prints its JSON
report with positive byte counts for both RAM tiers. Shape only: no ratio threshold.

Needs Redis from `make services-up` (`make test` starts it) for the Redis half.
"""

from __future__ import annotations

import pytest

from tests.e2e.test_bench_smoke import assert_positive, run_bench
from tools import services

pytestmark = pytest.mark.e2e

BYTES_KEYS = ("naive_bytes", "compression_only_bytes", "strata_bytes", "ratio")


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

"""`bench invalidation`'s arithmetic: percentiles of the rounds, rounds that never reached
every node, ratios against the baseline."""

from __future__ import annotations

from bench.invalidation import ratios, summary


def test_summary_is_in_milliseconds_with_true_percentiles() -> None:
    rounds = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    out = summary(rounds)
    assert out["rounds"] == 100 and out["not_reached"] == 0
    assert 49 <= out["p50_ms"] <= 52
    assert 98 <= out["p99_ms"] <= 100
    assert out["max_ms"] == 100


def test_rounds_that_never_reached_every_node_are_counted_not_averaged() -> None:
    out = summary([0.010, float("inf"), 0.020])
    assert out["not_reached"] == 1
    assert out["max_ms"] == 20


def test_ratios_against_the_baseline() -> None:
    result = {"baseline": {"p99_ms": 1000.0}, "event": {"p99_ms": 10.0}, "write": {}}
    assert ratios(result) == {"event_p99/baseline_p99": 0.01}

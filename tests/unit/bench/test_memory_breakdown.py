"""`bench.memory_breakdown`: the object walk counts each object once, and the walked
components of a real tier account for what tracemalloc sees it hold."""

from __future__ import annotations

import sys

from bench.memory_breakdown import COMPONENTS, breakdown, deep_size
from bench.memory_corpus import build_corpus
from sidecar.tiers.memory_cost import allocated


def test_deep_size_counts_shared_objects_once_and_extends_seen() -> None:
    shared = b"x" * 100
    a, b = [shared], [shared]
    seen: set[int] = set()
    first = deep_size([a], seen)
    assert first == allocated(sys.getsizeof(a)) + allocated(sys.getsizeof(shared))
    assert deep_size([b], seen) == allocated(sys.getsizeof(b))  # `shared` already counted
    assert deep_size([a, b], seen) == 0


def test_deep_size_skips_and_collects_instances_of_skip() -> None:
    class Big:
        def __init__(self) -> None:
            self.payload = bytearray(10_000)

    big = Big()
    skipped: list[object] = []
    holder = [big, b"small"]
    size = deep_size([holder], set(), (Big,), skipped)
    assert size < 1000
    assert skipped == [big]


def test_the_breakdown_of_a_small_corpus_accounts_for_the_heap() -> None:
    report = breakdown(build_corpus(150, 7, 1_780_000_000_000))
    parts = report["components_bytes_per_response"]
    assert set(parts) == set(COMPONENTS)
    for name in ("bodies", "keys", "headers", "entry_objects", "slots", "policy", "expiry_heap"):
        assert parts[name] > 0, name
    heap, walked = report["heap_bytes_per_response"], report["walked_bytes_per_response"]
    assert 0.8 <= walked / heap <= 1.25, report  # the walk finds what the heap holds
    assert report["counted_bytes_per_response"] <= report["charged_bytes_per_response"]
    assert report["sketch_bytes"] > 0

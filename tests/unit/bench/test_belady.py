"""bench.belady: the clairvoyant reference policies of ``python -m bench hit-ratio``."""

from __future__ import annotations

import functools
import itertools
import random

from bench.belady import NEVER, belady, next_uses, oracle_lfu
from bench.simulate import LruPolicy, simulate, zipf_trace
from sidecar.tiers.memory import make_policy


def test_next_uses_points_at_the_next_access_of_the_same_key() -> None:
    trace = [("a", 1), ("b", 1), ("a", 1), ("c", 1), ("b", 1)]
    assert next_uses(trace) == [2, 4, NEVER, NEVER, NEVER]


def _best_hits(trace: tuple[str, ...], slots: int) -> int:
    """The most hits any policy (evicting anything, or passing an object by) can get:
    exhaustive search over every choice, for tiny traces of equal-size objects."""

    @functools.cache
    def best(i: int, cached: frozenset[str]) -> int:
        if i == len(trace):
            return 0
        key = trace[i]
        if key in cached:
            return 1 + best(i + 1, cached)
        options = [best(i + 1, cached)]  # pass it by
        if len(cached) < slots:
            options.append(best(i + 1, cached | {key}))
        else:
            options += [best(i + 1, (cached - {victim}) | {key}) for victim in cached]
        return max(options)

    return best(0, frozenset())


def test_with_equal_sizes_it_is_the_optimum_found_by_exhaustive_search() -> None:
    rng = random.Random(7)
    for _ in range(200):
        trace = tuple(rng.choice("abcde") for _ in range(rng.randint(1, 11)))
        slots = rng.randint(1, 3)
        got = belady([(k, 10) for k in trace], 10 * slots)
        assert got.hits == _best_hits(trace, slots), (trace, slots)


def test_no_online_policy_beats_it_on_an_equal_size_trace() -> None:
    trace = [(k.encode(), 1024) for k, _ in zipf_trace(n_keys=2000, n_accesses=20_000, alpha=0.8)]
    for budget in (20 * 1024, 200 * 1024):
        optimum = belady(trace, budget).hit_ratio
        assert simulate(lambda b=budget: LruPolicy[bytes](b), trace).hit_ratio <= optimum  # type: ignore[misc]
        tinylfu = simulate(lambda b=budget: make_policy(b, "tinylfu"), trace)  # type: ignore[misc]
        assert tinylfu.hit_ratio <= optimum
        assert oracle_lfu(trace, budget).hit_ratio <= optimum


def test_a_loop_larger_than_the_cache_defeats_lru_not_the_optimum() -> None:
    loop = [(f"k{i % 10}", 1) for i in range(1000)]
    assert simulate(lambda: LruPolicy[str](5), loop).hits == 0
    assert belady(loop, 5).hit_ratio > 0.4  # keeps 4-5 of the 10 and wins on them


def test_oracle_lfu_keeps_the_most_asked_for_keys_and_misses_each_first_time() -> None:
    trace = [("hot", 1)] * 5 + [("warm", 1)] * 3 + [("cold", 1)] + [("hot", 1), ("cold", 1)]
    result = oracle_lfu(trace, 2)  # hot and warm fit; cold never kept
    assert (result.hits, result.misses) == (4 + 1 + 2, 1 + 1 + 2)


def test_objects_larger_than_the_cache_and_keys_never_seen_again_are_passed_by() -> None:
    trace = [("big", 100), ("a", 1), ("big", 100), ("a", 1), *itertools.repeat(("once", 1), 1)]
    result = belady(trace, 10)
    assert (result.hits, result.misses) == (1, 4)

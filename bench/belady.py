"""Belady's clairvoyant policy over a whole trace: the reference a real policy is measured
against in ``python -m bench hit-ratio``.

`belady` replays a trace knowing every future access. On a miss the object is cached unless
it is never asked for again, or unless the cached objects it would displace are all needed
sooner than it is (then it is passed by); to make room it evicts the cached objects whose
next access is furthest away.

Not guaranteed: optimality for objects of different sizes. With equal sizes this is
Belady's MIN, the optimum of the request hit ratio (no policy can beat it on that trace).
With varying sizes the optimum is NP-hard and this farthest-next-use rule is a strong
heuristic, not a bound: a size-aware online policy may beat it on byte hit ratio.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Sequence
from typing import TypeVar

from bench.simulate import SimResult

__all__ = ["belady", "next_uses", "oracle_lfu"]

K = TypeVar("K", bound=Hashable)

#: "Never asked for again".
NEVER = 1 << 62


def next_uses(trace: Sequence[tuple[K, int]]) -> list[int]:
    """For each access, the position of the next access to the same key (`NEVER`: none)."""
    out = [NEVER] * len(trace)
    seen: dict[K, int] = {}
    for i in range(len(trace) - 1, -1, -1):
        key = trace[i][0]
        out[i] = seen.get(key, NEVER)
        seen[key] = i
    return out


def belady(trace: Sequence[tuple[K, int]], max_bytes: int) -> SimResult:
    """Replay `trace` (``(key, size)`` accesses) through a `max_bytes` cache run by the
    clairvoyant rule of the module docstring; hits counted as `bench.simulate.simulate`
    does (a key's size is the one it was cached with)."""
    after = next_uses(trace)
    cached: dict[K, tuple[int, int]] = {}  # key -> (its next access, its size)
    far: list[tuple[int, int, K]] = []  # (-next access, tie-breaker, key); stale items skipped
    used = hits = misses = hit_bytes = total_bytes = 0
    for i, (key, size) in enumerate(trace):
        total_bytes += size
        upcoming = after[i]
        held = cached.get(key)
        if held is not None:
            hits += 1
            hit_bytes += size
            cached[key] = (upcoming, held[1])
            heapq.heappush(far, (-upcoming, i, key))
            continue
        misses += 1
        if upcoming == NEVER or size > max_bytes:
            continue
        while used + size > max_bytes:
            neg_next, _, victim = far[0]
            entry = cached.get(victim)
            if entry is None or entry[0] != -neg_next:
                heapq.heappop(far)  # stale: evicted, or accessed again since
                continue
            if entry[0] < upcoming:
                break  # everything cached is needed sooner than this object: pass it by
            heapq.heappop(far)
            del cached[victim]
            used -= entry[1]
        if used + size > max_bytes:
            continue
        cached[key] = (upcoming, size)
        used += size
        heapq.heappush(far, (-upcoming, i, key))
    return SimResult.of(hits, misses, hit_bytes, total_bytes)


def oracle_lfu(trace: Sequence[tuple[K, int]], max_bytes: int) -> SimResult:
    """The best a frequency policy can do without seeing the order of the future: a static
    cache of the keys most often asked for over the whole trace (by count per byte, packed
    greedily into `max_bytes`), each a miss the first time it is asked for. Under
    independent requests (Zipf) this is the online optimum that Belady's MIN, which also
    knows *when* each key comes back, stands above."""
    counts: dict[K, int] = {}
    sizes: dict[K, int] = {}
    for key, size in trace:
        counts[key] = counts.get(key, 0) + 1
        sizes.setdefault(key, size)
    kept: set[K] = set()
    used = 0
    for key in sorted(counts, key=lambda k: counts[k] / max(1, sizes[k]), reverse=True):
        if used + sizes[key] <= max_bytes:
            kept.add(key)
            used += sizes[key]
    seen: set[K] = set()
    hits = misses = hit_bytes = total_bytes = 0
    for key, size in trace:
        total_bytes += size
        if key in kept and key in seen:
            hits += 1
            hit_bytes += size
        else:
            misses += 1
        seen.add(key)
    return SimResult.of(hits, misses, hit_bytes, total_bytes)

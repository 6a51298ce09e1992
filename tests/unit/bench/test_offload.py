"""``python -m bench offload``: routing, the two cluster models, the arithmetic, the headline,
and the simulated Strata cluster against three real engines over one shared tier."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench import offload
from bench.memory_corpus import build_corpus, naive_value
from bench.offload_model import (
    ObjectSize,
    PerNodeLru,
    StrataCluster,
    memory_policy,
    per_1000,
    random_nodes,
    replay,
    round_robin,
    sketch_capacity,
)
from bench.offload_sizes import memory_charges, object_sizes
from bench.simulate import LruPolicy, zipf_trace
from sidecar.core.clock import ManualClock
from sidecar.core.model import CachedResponse, Outcome, TierSnapshot
from sidecar.engine.engine import Engine
from sidecar.engine.placement import PlacementPolicy, entry_size
from sidecar.policy import FrequencySketch, WindowTinyLfuPolicy
from sidecar.tiers import codec
from sidecar.tiers.base import SHARED_RAM, SetStatus
from sidecar.tiers.memory import MemoryTier
from tests.support.fakes import DictTier


def _zipf(
    keys: int, accesses: int, alpha: float = 0.9
) -> tuple[list[bytes], dict[bytes, ObjectSize]]:
    trace = list(zipf_trace(n_keys=keys, n_accesses=accesses, alpha=alpha, seed=4))
    return [k.encode() for k, _ in trace], {k.encode(): ObjectSize.same(s) for k, s in trace}


# -- routing and arithmetic ----------------------------------------------------------------


def test_round_robin_sends_request_i_to_node_i_mod_n() -> None:
    assert round_robin(7, 3) == [0, 1, 2, 0, 1, 2, 0]


def test_random_routing_is_seeded_and_spreads_over_every_node() -> None:
    nodes = random_nodes(3000, 3, seed=9)
    assert nodes == random_nodes(3000, 3, seed=9)
    assert nodes != random_nodes(3000, 3, seed=10)
    spread = Counter(nodes)
    assert set(spread) == {0, 1, 2}
    assert all(900 < n < 1100 for n in spread.values())


def test_per_1000_scales_to_a_thousand_requests() -> None:
    assert per_1000(5, 2000) == 2.5
    assert per_1000(1000, 1000) == 1000.0
    assert per_1000(0, 0) == 0.0


def test_strata_bytes_split_the_total_between_memory_tiers_and_the_shared_tier() -> None:
    memory, shared = offload.strata_bytes(3_000_000, 0.1)
    assert memory == 100_000
    assert shared == 2_700_000
    assert 3 * memory + shared == 3_000_000


def test_ratio_refuses_a_baseline_without_origin_requests() -> None:
    counts = replay(PerNodeLru(3, 100), [b"a"], [0], {b"a": ObjectSize.same(10)})
    assert offload.ratio(counts, counts) == 1.0
    with pytest.raises(ValueError, match="no origin request"):
        offload.ratio(counts, replay(PerNodeLru(3, 100), [], [], {}))


# -- the baseline: per-node LRUs -----------------------------------------------------------


def test_a_miss_on_one_node_is_an_origin_request_although_another_node_has_the_key() -> None:
    sizes = {b"a": ObjectSize.same(10)}
    counts = replay(PerNodeLru(3, 100), [b"a"] * 6, round_robin(6, 3), sizes)
    assert (counts.origin, counts.memory_hits) == (3, 3)
    assert (counts.cold_on_node, counts.cold_in_cluster) == (3, 1)


def test_per_node_caches_are_byte_bounded_lrus() -> None:
    sizes = {k: ObjectSize.same(40) for k in (b"a", b"b", b"c")}
    # one node of 80 bytes: a, b miss; a hits (MRU); c evicts b; b evicts a; a misses
    counts = replay(PerNodeLru(1, 80), [b"a", b"b", b"a", b"c", b"b", b"a"], [0] * 6, sizes)
    assert counts.origin == 5
    assert counts.memory_hits == 1


def test_three_per_node_infinite_caches_pay_each_key_once_per_node_at_most() -> None:
    keys, sizes = _zipf(500, 6000)
    nodes = round_robin(len(keys), 3)
    counts = replay(PerNodeLru(3, 1 << 40), keys, nodes, sizes)
    assert counts.origin == len(set(zip(nodes, keys, strict=True)))
    assert len(sizes) < counts.origin <= 3 * len(sizes)
    assert counts.origin == counts.cold_on_node


# -- Strata: memory tiers over one shared tier ---------------------------------------------


def test_a_shared_hit_is_copied_into_the_memory_tier_of_the_node_that_read_it() -> None:
    sizes = {b"a": ObjectSize.same(10)}
    cluster = StrataCluster(3, 1000, 1000, shared_min_hits=1)
    assert cluster.request(0, b"a", sizes[b"a"]) == "origin"
    assert cluster.request(1, b"a", sizes[b"a"]) == "shared"
    assert cluster.request(1, b"a", sizes[b"a"]) == "memory"
    assert cluster.request(0, b"a", sizes[b"a"]) == "memory"


def test_a_key_looked_up_once_on_a_node_is_not_written_to_shared_ram_by_default() -> None:
    size = ObjectSize.same(10)
    cluster = StrataCluster(3, 0, 1000)  # no memory tier: every miss reaches the store
    assert cluster.request(0, b"a", size) == "origin"  # lookups on node 0: 1 < 2
    assert cluster.request(1, b"a", size) == "origin"  # node 1 has not seen it either
    assert cluster.request(0, b"a", size) == "origin"  # 2 lookups on node 0: now shared
    assert cluster.request(2, b"a", size) == "shared"


def test_the_shared_tier_evicts_its_least_recently_used_bytes() -> None:
    sizes = {k: ObjectSize.same(40) for k in (b"a", b"b", b"c")}
    cluster = StrataCluster(3, 0, 80, shared_min_hits=1)
    for key, node in ((b"a", 0), (b"b", 0), (b"a", 1), (b"c", 0)):  # a MRU, c evicts b
        cluster.request(node, key, sizes[key])
    assert cluster.request(2, b"a", sizes[b"a"]) == "shared"
    assert cluster.request(2, b"b", sizes[b"b"]) == "origin"


def test_the_memory_tier_charges_and_the_shared_tier_holds_their_own_sizes() -> None:
    size = ObjectSize(naive=10, memory=500, shared=50, entry=10)
    cluster = StrataCluster(3, 400, 60, shared_min_hits=1)
    assert cluster.request(0, b"a", size) == "origin"  # too big for memory, fits shared
    assert cluster.request(0, b"a", size) == "shared"


def test_a_shared_cache_with_infinite_ram_fetches_each_distinct_key_once() -> None:
    keys, sizes = _zipf(500, 6000)
    for nodes in (round_robin(len(keys), 3), random_nodes(len(keys), 3, seed=1)):
        counts = replay(StrataCluster(3, 0, 1 << 40, shared_min_hits=1), keys, nodes, sizes)
        assert counts.origin == len(sizes) == counts.cold_in_cluster


def test_with_room_for_everything_keys_turning_hot_reach_shared_ram_by_promotion() -> None:
    """A key's only store follows its first miss, when it is cold; a memory tier that never
    evicts never stores it again, so without promotion each node paid its own fetch of
    every key (origin == the per-node LRUs'). Promotion on the hit that makes it hot writes
    it to shared RAM, and nodes that have not fetched it yet are answered from there."""
    keys, sizes = _zipf(500, 6000)
    nodes = round_robin(len(keys), 3)
    strata = replay(StrataCluster(3, 1 << 30, 1 << 30), keys, nodes, sizes)
    baseline = replay(PerNodeLru(3, 1 << 30), keys, nodes, sizes)
    assert strata.shared_hits > 0
    assert strata.origin < baseline.origin
    assert strata.origin >= strata.cold_in_cluster  # every key is fetched at least once


def test_a_memory_hit_that_makes_a_key_hot_promotes_it_to_shared_ram() -> None:
    size = ObjectSize.same(10)
    cluster = StrataCluster(3, 1000, 1000)
    assert cluster.request(0, b"a", size) == "origin"  # count 1 on node 0: memory only
    assert cluster.request(1, b"a", size) == "origin"  # node 1 has not seen it either
    assert cluster.request(0, b"a", size) == "memory"  # count 2 on node 0: promoted
    assert cluster.request(2, b"a", size) == "shared"


def test_the_sketch_is_sized_as_the_sidecar_sizes_it() -> None:
    assert sketch_capacity(0) == 100_000
    assert sketch_capacity(256 * 1024**2) == 256 * 1024


# -- the simulated cluster against three real engines --------------------------------------


class LruSharedTier(DictTier):
    """A shared-RAM fake tier evicting its least recently used codec bytes."""

    def __init__(self, max_bytes: int, clock: ManualClock) -> None:
        super().__init__("redis", clock, capabilities=frozenset({SHARED_RAM}))
        self.lru = LruPolicy[bytes](max_bytes)

    async def get(self, key: bytes) -> CachedResponse | None:
        found = await super().get(key)
        if found is not None:
            self.lru.on_hit(key)
        return found

    async def set(self, key: bytes, entry: CachedResponse) -> SetStatus:
        # a promotion may write a key the shared tier holds: the new copy replaces it
        self.lru.remove(key)
        for victim, _ in self.lru.add(key, len(codec.encode(entry))):
            self.data.pop(victim, None)
        if key in self.lru:
            self.data[key] = entry
        return SetStatus.STORED

    async def delete(self, key: bytes) -> bool:
        # a store skipping shared RAM deletes the key there; it was a miss, so never held
        assert key not in self.lru, f"{key!r} deleted while the shared tier holds it"
        return await super().delete(key)

    def snapshot(self) -> TierSnapshot:
        return TierSnapshot(self.name, len(self.data), self.lru.used_bytes, 0)


def _responses(keys: int, clock: ManualClock) -> dict[bytes, CachedResponse]:
    rng = random.Random(3)
    words = [b"alpha", b"beta", b"gamma", b"delta", b"price", b"items"]
    out = {}
    for i in range(keys):
        length = int(100 * 80 ** rng.random())  # 100 B - 8 KB
        body = (
            rng.randbytes(length)
            if i % 3 == 0
            else b" ".join(rng.choice(words) for _ in range(length // 6))
        )
        headers = ((b"content-type", b"application/json"), (b"etag", b"%d" % i))
        out[f"k{i}".encode()] = CachedResponse(200, headers, body, clock.now_ms(), 3_600_000)
    return out


def _policy_factory(
    sketch: FrequencySketch, rng: random.Random
) -> Callable[[int, str], WindowTinyLfuPolicy[bytes]]:
    def make(budget: int, admission: str) -> WindowTinyLfuPolicy[bytes]:
        assert admission == "tinylfu"
        return memory_policy(budget, sketch, rng)

    return make


async def _real_answers(
    keys: list[bytes],
    nodes: list[int],
    responses: dict[bytes, CachedResponse],
    memory_bytes: int,
    shared_bytes: int,
    clock: ManualClock,
) -> list[str]:
    shared = LruSharedTier(shared_bytes, clock)
    engines: list[Engine] = []
    for node in range(3):
        sketch = FrequencySketch(sketch_capacity(memory_bytes))
        factory = _policy_factory(sketch, random.Random(node))  # StrataCluster's, seed 0
        memory = MemoryTier(memory_bytes, clock, "tinylfu", policy_factory=factory)
        engines.append(
            Engine([memory, shared], clock, placement=PlacementPolicy(), frequencies=sketch)
        )
    answers = []
    for key, node in zip(keys, nodes, strict=True):
        found = await engines[node].lookup(key)
        await engines[node]._reads.promoter.drain()  # the model promotes at once
        if found.outcome is Outcome.MISS:
            await engines[node].store(key, responses[key])
            answers.append("origin")
        else:
            answers.append("memory" if found.tier == "memory" else "shared")
    return answers


def test_the_simulated_cluster_answers_as_three_real_engines_over_one_shared_tier(
    clock: ManualClock,
) -> None:
    """Per request, memory / shared / origin as the engine's own read and store path, with
    the memory tier's real charges, its W-TinyLFU and the shared sketch, decides it."""
    responses = _responses(300, clock)
    trace = list(zipf_trace(n_keys=300, n_accesses=4000, alpha=0.9, seed=8))
    keys = [k.encode() for k, _ in trace]
    nodes = random_nodes(len(keys), 3, seed=2)
    charges = memory_charges(list(responses.items()))
    sizes = {
        key: ObjectSize(0, charge, len(codec.encode(entry)), entry_size(entry))
        for (key, entry), charge in zip(responses.items(), charges, strict=True)
    }
    memory_bytes, shared_bytes = 40_000, 120_000  # both evict on this trace
    cluster = StrataCluster(3, memory_bytes, shared_bytes)
    simulated = [cluster.request(n, k, sizes[k]) for k, n in zip(keys, nodes, strict=True)]
    real = asyncio.run(_real_answers(keys, nodes, responses, memory_bytes, shared_bytes, clock))
    assert Counter(simulated)["shared"] > 100  # the shared tier is exercised
    assert Counter(simulated)["origin"] > 600  # and both tiers evict
    assert simulated == real


# -- sizes, traces, headline, the run ------------------------------------------------------


def test_stored_sizes_come_from_the_codec_and_the_memory_tier(clock: ManualClock) -> None:
    items = build_corpus(20, seed=1, now_ms=clock.now_ms())
    sizes = object_sizes(items)
    for item, size in zip(items, sizes, strict=True):
        assert size.naive == len(naive_value(item))
        assert size.shared == len(codec.encode(item.entry)) < size.naive  # JSON compresses
        assert size.entry == entry_size(item.entry)
        assert size.memory > len(item.key)  # the tier's charge: more than a short JSON
    assert sum(s.memory for s in sizes) < sum(s.naive for s in sizes)


def test_only_corpus_traces_have_an_as_stored_mode() -> None:
    corpus = [ObjectSize(1000, 400, 300, 900), ObjectSize(2000, 700, 500, 1900)]
    by_name = {s.name: s for s in offload.TRACES}
    on_corpus = offload.build_trace(by_name["zipf-0.9"], 50, 400, 1, corpus)
    assert set(on_corpus.sizes) == {"architecture", "as_stored"}
    assert on_corpus.sizes["as_stored"][b"k3"] == corpus[1]
    assert on_corpus.sizes["architecture"][b"k3"] == ObjectSize.same(2000)
    sized = offload.build_trace(by_name["zipf-0.9-sized"], 50, 400, 1, corpus)
    assert set(sized.sizes) == {"architecture"}
    assert len(sized.keys) == len(on_corpus.keys) == 400


def _row(fraction: float, baseline: int, **strata: int) -> dict[str, Any]:
    return {
        "fraction": fraction,
        "baseline": {"origin": baseline},
        "strata": {mode: {"origin": origin} for mode, origin in strata.items()},
    }


def test_the_headline_is_the_ratio_of_the_rows_of_the_same_run() -> None:
    results = {
        "zipf-0.9": {
            "rows": [
                _row(0.05, 900, architecture=10, as_stored=10),
                _row(0.10, 800, architecture=600, as_stored=400),
            ]
        },
        "zipf-1.0": {"rows": [_row(0.10, 500, architecture=400, as_stored=150)]},
    }
    rows = offload.headline(results)
    assert [(r["value"], r["met"]) for r in rows] == [
        (0.75, False),
        (0.5, True),
        (0.8, False),
        (0.3, True),
    ]
    assert all(r["unit"] == "x" and r["target"] == "<= 0.5x" for r in rows)
    assert "zipf-0.9, same bytes" in rows[0]["name"]
    assert "zipf-1.0, as stored" in rows[3]["name"]


def test_the_quick_run_reports_every_trace_and_the_headline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    offload.add_arguments(parser)
    png = tmp_path / "offload.png"
    assert offload.run(parser.parse_args(["--quick", "--png", str(png)])) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scenario"] == "offload"
    assert set(report["traces"]) == {s.name for s in offload.TRACES}
    assert len(report["headline"]) == 4
    for name, trace in report["traces"].items():
        assert [r["fraction"] for r in trace["rows"]] == list(offload.FRACTIONS)
        for row in trace["rows"]:
            for strata in row["strata"].values():
                assert strata["ratio"] == round(strata["origin"] / row["baseline"]["origin"], 4)
        infinite = trace["infinite_ram"]
        assert infinite["strata_shared_min_hits_1"]["origin"] == infinite["distinct_keys"], name
    runs = [(name, mode) for name in offload.HEADLINE_TRACES for mode in offload.MODES]
    for row, (name, mode) in zip(report["headline"], runs, strict=True):
        rows = report["traces"][name]["rows"]
        tenth = next(r for r in rows if r["fraction"] == offload.HEADLINE_FRACTION)
        assert row["value"] == round(tenth["strata"][mode]["ratio"], 3)
    assert png.stat().st_size > 10_000


def test_while_the_shared_tier_has_room_a_first_fetch_is_shared_at_once() -> None:
    """As `Budgets.roomy` makes placement do: below the room fraction of the shared tier's
    bytes, a miss's store goes there on the key's first lookup; above it, not."""
    size = ObjectSize.same(40)
    cluster = StrataCluster(3, 1000, 100, room_fraction=0.8)
    assert cluster.request(0, b"a", size) == "origin"  # 0 of 100 bytes used: shared
    assert cluster.request(1, b"a", size) == "shared"
    assert cluster.request(0, b"b", size) == "origin"  # 40 < 80: shared too
    assert cluster.request(0, b"c", size) == "origin"  # 80 >= 80: no room, cold: memory
    assert cluster.request(1, b"c", size) == "origin"
    strict = StrataCluster(3, 1000, 100)  # room rule off
    assert strict.request(0, b"a", size) == "origin"
    assert strict.request(1, b"a", size) == "origin"

"""offload: origin requests per 1,000 client requests, 3 nodes, Strata against per-node caches.

Three simulated gateway nodes behind a load balancer (round-robin; random in a sweep) replay
seeded Zipf traces (alpha 0.7, 0.9, 1.0, 1.2 over `--keys` keys; every key is a response of
the `bench.memory_corpus` corpus, 1-20 KB of JSON) and one Zipf(0.9) trace of log-uniform
sizes (256 B-64 KiB, `bench.simulate.zipf_trace`). Trace-driven, no servers:
`bench.offload_model` replays the engine's read and store path with the memory tier's real
policy, the real sketch and the real placement (a unit test checks it answers request by
request as three real `Engine`s over one shared tier do).

Baseline (Kong proxy-cache's model): each node has its own LRU of a third of the total RAM
holding Kong's stored value (`bench.memory_corpus.naive_value`: raw body in JSON), nothing
shared; a miss on a node is an origin request even when another node has the key.

Strata, the same total RAM: per node a memory tier of `HEADLINE_SPLIT` (10 %) of the node's
third (W-TinyLFU), the rest as one shared Redis (an exact LRU); placement with the defaults
``shared_min_hits`` = 2 and ``shared_room_fraction`` = 0.8 (a miss's entry goes to Redis from
the key's first lookup while Redis holds under 80 % of its bytes), and promotion. 10 %
because the memory tier is there for latency, not offload:
every key it holds is also a candidate for Redis, so its bytes are mostly copies; 10 % of a
node's RAM holds the hottest keys (the sweep shows what more costs). Two rows:
"architecture" (every tier charged the baseline's bytes: what sharing alone buys) and
"as_stored" (the memory tier charged what it really charges, Redis the codec's compressed
value: `bench.offload_sizes`).

Figures: origin requests per 1,000 requests at total RAM of 1, 5, 10 and 25 % of the
trace's distinct naive bytes; the headline ratio Strata / baseline at 10 % for alpha 0.9
and 1.0 (target <= 0.5x, moonshot 0.35x); sweeps on those two traces: the memory share per
node (at 10 %), ``shared_min_hits`` 1 and the room rule off (at every size), random
routing (at 10 %); and with
RAM for everything ("infinite": only cold misses left). Cold misses are counted: a key's
first request on a node (`cold_on_node`: a per-node cache pays them up to once per node)
and anywhere (`cold_in_cluster`). Prints JSON; draws origin requests per 1,000 against RAM
per trace. Deterministic for a seed and a Python hash seed.

Not guaranteed: realism (synthetic traces, no expiry, no purges, one request at a time so
no two nodes miss a key at once); Redis' eviction (``allkeys-lru`` samples, this LRU is
exact); per-key overhead of Redis or of Kong's shared dict (both charged their payload, see
`bench.offload_sizes`, which also says why dedup is not counted); the same figures across
Python hash seeds (the sketch's indices depend on them: ``PYTHONHASHSEED``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.offload_model import (
    Counts,
    ObjectSize,
    PerNodeLru,
    StrataCluster,
    random_nodes,
    replay,
    round_robin,
)
from bench.offload_sizes import corpus_sizes
from bench.simulate import zipf_trace
from sidecar.config import SidecarConfig

NODES = 3
FRACTIONS = (0.01, 0.05, 0.10, 0.25)
HEADLINE_FRACTION = 0.10
SPLITS = (0.05, 0.10, 0.25, 0.50)
#: The memory tier's share of a node's RAM in the headline (see `add_arguments`).
HEADLINE_SPLIT = 0.10
#: The product's defaults (`sidecar.config.settings`), the headline's.
SHARED_MIN_HITS = SidecarConfig().shared_min_hits
ROOM_FRACTION = SidecarConfig().shared_room_fraction
HEADLINE_TRACES = ("zipf-0.9", "zipf-1.0")
MODES = ("architecture", "as_stored")
TARGET = 0.5
MOONSHOT = 0.35
BASELINE = "3 per-node LRUs, Kong proxy-cache's layout, same total RAM and trace"
#: How the headline names each mode.
MODE_LABELS = {"architecture": "same bytes", "as_stored": "as stored"}


@dataclass(frozen=True)
class TraceSpec:
    """A seeded Zipf trace; `corpus`: its keys are responses of the corpus (else the
    trace's own log-uniform sizes, the same bytes in every cache)."""

    name: str
    alpha: float
    corpus: bool


TRACES = (
    TraceSpec("zipf-0.7", 0.7, corpus=True),
    TraceSpec("zipf-0.9", 0.9, corpus=True),
    TraceSpec("zipf-1.0", 1.0, corpus=True),
    TraceSpec("zipf-1.2", 1.2, corpus=True),
    TraceSpec("zipf-0.9-sized", 0.9, corpus=False),
)


@dataclass(frozen=True)
class Trace:
    """Requested keys in order, and each key's sizes per mode (``as_stored`` absent for a
    trace without corpus responses)."""

    name: str
    keys: list[bytes]
    sizes: dict[str, dict[bytes, ObjectSize]]

    @property
    def distinct_naive_bytes(self) -> int:
        return sum(size.naive for size in self.sizes["architecture"].values())


def build_trace(
    spec: TraceSpec, keys: int, accesses: int, seed: int, corpus: Sequence[ObjectSize]
) -> Trace:
    """`spec`'s trace; key ``k<i>`` is corpus response ``i mod len(corpus)``."""
    order: list[bytes] = []
    stored: dict[bytes, ObjectSize] = {}
    for name, size in zipf_trace(n_keys=keys, n_accesses=accesses, alpha=spec.alpha, seed=seed):
        key = name.encode()
        order.append(key)
        if key not in stored:
            stored[key] = (
                corpus[int(name[1:]) % len(corpus)] if spec.corpus else ObjectSize.same(size)
            )
    sizes = {"architecture": {k: ObjectSize.same(s.naive) for k, s in stored.items()}}
    if spec.corpus:
        sizes["as_stored"] = stored
    return Trace(spec.name, order, sizes)


def strata_bytes(total: int, split: float, nodes: int = NODES) -> tuple[int, int]:
    """(memory tier per node, shared tier) out of `total` bytes: each node's memory tier
    gets `split` of the node's share, the shared tier what is left."""
    memory = int(total / nodes * split)
    return memory, total - nodes * memory


def ratio(strata: Counts, baseline: Counts) -> float:
    """Strata's origin requests over the baseline's (the same trace)."""
    if baseline.origin == 0:
        raise ValueError("the baseline made no origin request: nothing to compare with")
    return strata.origin / baseline.origin


class Runs:
    """Every replay of one run, each made once (the headline reads the rows' own counts)."""

    def __init__(self, trace: Trace, seed: int) -> None:
        self.trace = trace
        self.seed = seed
        n = len(trace.keys)
        self._routes = {
            "round-robin": round_robin(n, NODES),
            "random": random_nodes(n, NODES, seed),
        }
        self._done: dict[tuple[Any, ...], Counts] = {}

    def _memo(self, key: tuple[Any, ...], make: Any) -> Counts:
        if key not in self._done:
            self._done[key] = make()
        return self._done[key]

    def baseline(self, total: int, routing: str = "round-robin") -> Counts:
        t = self.trace
        return self._memo(
            ("baseline", total, routing),
            lambda: replay(
                PerNodeLru(NODES, total // NODES),
                t.keys,
                self._routes[routing],
                t.sizes["architecture"],
            ),
        )

    def strata(
        self,
        total: int,
        mode: str,
        split: float = HEADLINE_SPLIT,
        min_hits: int = SHARED_MIN_HITS,
        routing: str = "round-robin",
        room: float = ROOM_FRACTION,
    ) -> Counts:
        memory, shared = strata_bytes(total, split)
        t = self.trace
        return self._memo(
            ("strata", total, mode, split, min_hits, routing, room),
            lambda: replay(
                StrataCluster(NODES, memory, shared, min_hits, self.seed, room),
                t.keys,
                self._routes[routing],
                t.sizes[mode],
            ),
        )

    def compared(self, total: int, mode: str, **how: Any) -> dict[str, Any]:
        routing = how.get("routing", "round-robin")
        counts = self.strata(total, mode, **how)
        return {**counts.as_dict(), "ratio": round(ratio(counts, self.baseline(total, routing)), 4)}

    def infinite(self) -> dict[str, Any]:
        """RAM for every distinct byte in each cache: what is left are cold misses."""
        t = self.trace
        sizes = t.sizes["architecture"]
        total = t.distinct_naive_bytes
        base = replay(PerNodeLru(NODES, total), t.keys, self._routes["round-robin"], sizes)
        out: dict[str, Any] = {"distinct_keys": len(sizes), "baseline": base.as_dict()}
        for hits in (1, 2):
            cluster = StrataCluster(NODES, total, total, hits, self.seed, ROOM_FRACTION)
            counts = replay(cluster, t.keys, self._routes["round-robin"], sizes)
            out[f"strata_shared_min_hits_{hits}"] = counts.as_dict()
        return out


def measure(runs: Runs) -> dict[str, Any]:
    """Every figure of one trace (see the module doc)."""
    t = runs.trace
    distinct = t.distinct_naive_bytes
    modes = [m for m in MODES if m in t.sizes]
    rows = []
    for fraction in FRACTIONS:
        total = int(distinct * fraction)
        rows.append(
            {
                "fraction": fraction,
                "total_bytes": total,
                "baseline": runs.baseline(total).as_dict(),
                "strata": {m: runs.compared(total, m) for m in modes},
            }
        )
    out: dict[str, Any] = {
        "requests": len(t.keys),
        "distinct_keys": len(t.sizes["architecture"]),
        "distinct_naive_bytes": distinct,
        "mean_bytes": {
            m: {
                side: round(sum(getattr(s, side) for s in t.sizes[m].values()) / len(t.sizes[m]))
                for side in ("naive", "memory", "shared")
            }
            for m in modes
        },
        "rows": rows,
    }
    if t.name in HEADLINE_TRACES:
        total = int(distinct * HEADLINE_FRACTION)
        out["sweeps"] = {
            "memory_share_at_headline_fraction": {
                str(split): {m: runs.compared(total, m, split=split)["ratio"] for m in modes}
                for split in SPLITS
            },
            "no_room_rule_by_fraction": {
                str(fraction): {
                    m: runs.compared(int(distinct * fraction), m, room=0.0) for m in modes
                }
                for fraction in FRACTIONS
            },
            "shared_min_hits_1_by_fraction": {
                str(fraction): {
                    m: runs.compared(int(distinct * fraction), m, min_hits=1) for m in modes
                }
                for fraction in FRACTIONS
            },
            "random_routing_at_headline_fraction": {
                "baseline": runs.baseline(total, "random").as_dict(),
                **{m: runs.compared(total, m, routing="random") for m in modes},
            },
        }
    out["infinite_ram"] = runs.infinite()
    return out


def headline(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The ratio at `HEADLINE_FRACTION` of each headline trace and mode, from the rows."""
    rows = []
    for name in HEADLINE_TRACES:
        row = next(r for r in results[name]["rows"] if r["fraction"] == HEADLINE_FRACTION)
        for mode, strata in row["strata"].items():
            value = strata["origin"] / row["baseline"]["origin"]
            rows.append(
                {
                    "name": f"offload: origin requests, {name}, {MODE_LABELS[mode]} "
                    f"(RAM {HEADLINE_FRACTION:.0%} of distinct bytes)",
                    "value": round(value, 3),
                    "unit": "x",
                    "baseline": BASELINE,
                    "target": f"<= {TARGET}x",
                    "met": value <= TARGET,
                }
            )
    return rows


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keys", type=int, default=20_000, help="distinct keys per trace")
    p.add_argument("--accesses", type=int, default=150_000, help="requests per trace")
    p.add_argument("--responses", type=int, default=2_000, help="corpus responses (sizes)")
    p.add_argument("--seed", type=int, default=15, help="trace and routing seed")
    p.add_argument("--corpus-seed", type=int, default=20260611, help="corpus seed")
    p.add_argument("--png", type=Path, default=Path(".run/bench/offload.png"), help="plot")
    p.add_argument("--quick", action="store_true", help="small traces (smoke test)")


def run(args: argparse.Namespace) -> int:
    from bench.offload_plot import plot  # noqa: PLC0415 - matplotlib only when it draws

    start = time.monotonic()
    keys, accesses, responses = (
        (2_000, 15_000, 200) if args.quick else (args.keys, args.accesses, args.responses)
    )
    corpus = corpus_sizes(responses, args.corpus_seed)
    results = {}
    for spec in TRACES:
        print(f"offload: {spec.name}", file=sys.stderr, flush=True)
        trace = build_trace(spec, keys, accesses, args.seed, corpus)
        results[spec.name] = measure(Runs(trace, args.seed))
    plot(results, args.png)
    report = {
        "scenario": "offload",
        "quick": bool(args.quick),
        "nodes": NODES,
        "keys": keys,
        "accesses": accesses,
        "corpus_responses": responses,
        "seed": args.seed,
        "corpus_seed": args.corpus_seed,
        "routing": "round-robin (random in `random_routing`)",
        "headline_fraction": HEADLINE_FRACTION,
        "memory_share_per_node": HEADLINE_SPLIT,
        "shared_min_hits": SHARED_MIN_HITS,
        "shared_room_fraction": ROOM_FRACTION,
        "baseline": BASELINE,
        "moonshot": f"<= {MOONSHOT}x",
        "traces": results,
        "headline": headline(results),
        "png": str(args.png),
        "seconds": round(time.monotonic() - start, 1),
    }
    print(json.dumps(report, indent=2))
    sys.stdout.flush()
    return 0

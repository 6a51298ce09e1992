"""One frequency sketch per sidecar: the engine counts each lookup of a key once; placement
and the memory tier's admission read the same counts."""

from __future__ import annotations

from sidecar.app import build_engine
from sidecar.config import SidecarConfig
from sidecar.core.clock import ManualClock
from sidecar.core.observer import NullObserver
from sidecar.engine.engine import Engine
from sidecar.engine.placement import PlacementPolicy
from sidecar.policy.admission import SharedTinyLfuAdmitter
from sidecar.policy.shared import shared_policy_factory
from sidecar.policy.sketch import FrequencySketch
from sidecar.tiers.memory import MemoryTier
from tests.support.entries import entry
from tests.support.fakes import DictTier


def shared_engine(
    clock: ManualClock, below: DictTier | None = None
) -> tuple[Engine, FrequencySketch]:
    sketch = FrequencySketch(1024)
    memory = MemoryTier(1 << 20, clock, policy_factory=shared_policy_factory(sketch))
    engine = Engine(
        [memory, below or DictTier("shared", clock)],
        clock,
        placement=PlacementPolicy(),
        frequencies=sketch,
    )
    return engine, sketch


async def test_one_lookup_raises_the_shared_frequency_by_exactly_one(clock: ManualClock) -> None:
    engine, sketch = shared_engine(clock)
    assert engine.frequencies is sketch
    for n in range(1, 4):
        await engine.lookup(b"k")  # a miss, read in memory and below
        assert sketch.frequency(b"k") == n
    await engine.store(b"k", entry(clock))
    assert sketch.frequency(b"k") == 3  # a store counts nothing
    await engine.lookup(b"k")  # a memory hit
    assert sketch.frequency(b"k") == 4


async def test_a_variant_lookup_counts_the_key_and_its_variant_once_each(
    clock: ManualClock,
) -> None:
    below = DictTier("shared", clock)
    engine, sketch = shared_engine(clock, below)
    req = ((b"accept", b"json"),)
    await engine.store(b"v", entry(clock, vary=("accept",)), req)
    variants = [k for k in below.data if k != b"v"]
    assert len(variants) == 1 and sketch.frequency(variants[0]) == 0
    await engine.lookup(b"v", req)
    assert (sketch.frequency(b"v"), sketch.frequency(variants[0])) == (1, 1)


async def test_the_app_builds_one_sketch_for_placement_and_admission() -> None:
    clock = ManualClock()
    engine = build_engine(SidecarConfig(), clock, NullObserver())
    sketch = engine.frequencies
    assert isinstance(sketch, FrequencySketch)
    await engine.lookup(b"k")
    assert sketch.frequency(b"k") == 1  # not 2: the memory tier does not count its read


def test_the_shared_admitter_counts_nothing_and_reads_the_sketch() -> None:
    sketch = FrequencySketch(64)
    admitter = SharedTinyLfuAdmitter(sketch)
    admitter.record(b"a")
    assert sketch.frequency(b"a") == 0
    sketch.increment(b"a")
    assert admitter.admit(b"a", b"b") and not admitter.admit(b"b", b"a")

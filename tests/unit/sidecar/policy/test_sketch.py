"""FrequencySketch: counting, saturation, aging (TinyLFU reset), sizing, collisions."""

from __future__ import annotations

import random

import pytest

from sidecar.policy.admission import SKETCH_KEYS_PER_ENTRY, TinyLfuAdmitter
from sidecar.policy.eviction import WindowTinyLfuPolicy
from sidecar.policy.sketch import FrequencySketch


def _odd_counters(sketch: FrequencySketch) -> int:
    return sum(1 for c in sketch._table if c & 1)  # white-box: the reset's size correction


@pytest.mark.parametrize(
    ("capacity", "width"),
    [(0, 16), (1, 16), (15, 16), (16, 16), (17, 32), (1000, 1024), (1024, 1024), (1025, 2048)],
)
def test_width_is_next_power_of_two_at_least_16(capacity: int, width: int) -> None:
    sketch = FrequencySketch(capacity)
    assert sketch.width == width
    assert sketch.depth == 4
    assert sketch.memory_bytes == 4 * width  # one byte per counter
    assert sketch.sample_size == 10 * max(capacity, 1)


def test_negative_capacity_is_refused() -> None:
    with pytest.raises(ValueError, match="capacity"):
        FrequencySketch(-1)


def test_increment_and_frequency() -> None:
    sketch = FrequencySketch(1024)
    assert sketch.frequency("a") == 0
    for _ in range(3):
        sketch.increment("a")
    sketch.increment(b"b")
    assert sketch.frequency("a") >= 3
    assert sketch.frequency(b"b") >= 1
    # A count-min sketch only over-estimates, and with two keys in 4 x 1024 counters an
    # over-estimate needs a collision in all four rows: it is exact here.
    assert sketch.frequency("a") == 3
    assert sketch.frequency(b"b") == 1
    assert sketch.size == 4


def test_counters_saturate_at_15() -> None:
    sketch = FrequencySketch(1024)
    for _ in range(40):
        sketch.increment("hot")
    assert sketch.frequency("hot") == 15
    # Increments that raise no counter do not count towards aging.
    assert sketch.size == 15


def test_reset_halves_frequencies_and_size() -> None:
    sketch = FrequencySketch(1024)
    for _ in range(12):
        sketch.increment("hot")
    for _ in range(5):
        sketch.increment("warm")
    for _ in range(15):
        sketch.increment("full")
    size_before, odd = sketch.size, _odd_counters(sketch)
    assert size_before == 32
    sketch.reset()
    assert sketch.frequency("hot") == 6
    assert sketch.frequency("warm") == 2
    assert sketch.frequency("full") == 7
    assert sketch.size == (size_before - odd // 4) // 2
    assert sketch.size <= size_before // 2


def test_aging_triggers_after_sample_size_increments() -> None:
    sketch = FrequencySketch(64)  # width 64, sample_size 640
    for _ in range(10):
        sketch.increment("hot")
    assert sketch.frequency("hot") == 10
    rng = random.Random(7)
    counted = sketch.size
    while True:
        size, hot = sketch.size, sketch.frequency("hot")
        sketch.increment(f"filler-{rng.getrandbits(64)}")
        if sketch.size <= size:  # no counter raised (all saturated), or the reset ran
            if sketch.size == size:
                continue
            break
        counted += 1
    # The reset ran on exactly the sample_size-th counted increment ...
    assert counted + 1 == sketch.sample_size
    assert size == sketch.sample_size - 1
    # ... and halved every counter: the hot key's frequency (which collisions may have
    # raised, and the triggering increment may have raised by one more) fell by half,
    assert sketch.frequency("hot") in {hot // 2, min(hot + 1, 15) // 2}
    assert max(sketch._table) <= 7
    # and so did the size counter (minus the odd-counter correction, at most width).
    assert sketch.sample_size // 2 - sketch.width <= sketch.size <= sketch.sample_size // 2


def test_aging_repeats() -> None:
    sketch = FrequencySketch(16)  # sample_size 160
    rng = random.Random(3)
    for _ in range(5000):
        sketch.increment(f"k{rng.randrange(100_000)}")
        assert sketch.size < sketch.sample_size
    assert max(sketch._table) <= 15


def test_distinct_keys_rarely_collide_at_modest_load() -> None:
    sketch = FrequencySketch(4096)  # 4 rows x 4096 counters
    rng = random.Random(1234)
    seen = [f"GET /items/{rng.getrandbits(64):x}" for _ in range(1000)]
    unseen = [f"GET /other/{rng.getrandbits(64):x}" for _ in range(1000)]
    for key in seen:
        sketch.increment(key)
    # One row has ~1000/4096 = 24% of its counters set; a false positive needs all four
    # rows to hit one: ~0.2%, i.e. ~2 in 1000. Perfectly correlated rows would give 24%.
    false_positives = sum(1 for key in unseen if sketch.frequency(key) > 0)
    overestimates = sum(1 for key in seen if sketch.frequency(key) != 1)
    assert false_positives <= 20
    assert overestimates <= 20


def test_clear_forgets_everything() -> None:
    sketch = FrequencySketch(32)
    sketch.increment("a")
    sketch.clear()
    assert sketch.frequency("a") == 0
    assert sketch.size == 0


def test_grow_keeps_every_estimate_and_widens_the_rows() -> None:
    """After growing 16 -> 1024 counters per row every key's estimate is what it was (none
    lost, though width 16 aged and merged them), and counting goes on from there; a sketch
    then splits the keys that share an old counter."""
    rng = random.Random(7)
    sketch = FrequencySketch(16)
    keys = [f"k{i}" for i in range(200)]
    truth = {key: rng.randrange(1, 6) for key in keys}
    for key, count in truth.items():
        for _ in range(count):
            sketch.increment(key)
    before = {key: sketch.frequency(key) for key in keys}
    before_first = sketch._table[0]
    size = sketch.size
    assert sketch.grow(1000) is True
    assert (sketch.width, sketch.capacity, sketch.memory_bytes) == (1024, 1000, 4096)
    assert sketch.sample_size == 10_000
    assert sketch.size == size
    after = {key: sketch.frequency(key) for key in keys}
    assert all(after[key] == before[key] for key in keys)  # each index splits in two
    assert sketch._table[:2] == bytes([before_first] * 2)  # white-box: row 0, index 0
    for key in keys:
        sketch.increment(key)
    assert all(sketch.frequency(key) >= min(15, after[key] + 1) for key in keys)


def test_grow_to_a_capacity_it_already_counts_does_nothing() -> None:
    sketch = FrequencySketch(1000)
    sketch.increment("a")
    assert sketch.grow(1000) is False
    assert sketch.grow(10) is False
    assert (sketch.width, sketch.capacity, sketch.frequency("a")) == (1024, 1000, 1)


def test_grow_refuses_a_table_beyond_the_maximum_width() -> None:
    sketch = FrequencySketch(16)
    with pytest.raises(ValueError, match="width"):
        sketch.grow((1 << 30) + 1)
    assert sketch.width == 16


def test_tinylfu_admitter_widens_its_sketch_with_the_entries_held() -> None:
    """`fit` widens to SKETCH_KEYS_PER_ENTRY keys per entry and answers when to ask again;
    a policy over 10,000 one-byte keys ends with a sketch counting >= 40,000 keys."""
    admitter = TinyLfuAdmitter(FrequencySketch(16))
    assert admitter.fit(100) == 100
    assert admitter.sketch.capacity == SKETCH_KEYS_PER_ENTRY * 100
    assert admitter.fit(50) == 100  # never narrows
    policy = WindowTinyLfuPolicy[str](10_000, TinyLfuAdmitter(FrequencySketch(16)))
    for i in range(10_000):
        policy.add(f"k{i}", 1)
    assert len(policy) == 10_000
    sketch = policy._admitter.sketch  # type: ignore[attr-defined]  # white-box
    assert sketch.capacity >= SKETCH_KEYS_PER_ENTRY * 10_000


def test_increment_answers_the_estimate_frequency_gives_after_it() -> None:
    """The engine reads a key's count from its increment (promotion), not with a second
    hashing: both must agree, through saturation."""
    sketch = FrequencySketch(1 << 16)
    rng = random.Random(3)
    keys = [f"k{i}" for i in range(300)]
    for _ in range(3000):
        key = rng.choice(keys)
        assert sketch.increment(key) == sketch.frequency(key)
    for _ in range(20):
        assert sketch.increment("hot") == sketch.frequency("hot")
    assert sketch.frequency("hot") == 15

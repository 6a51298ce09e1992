"""WindowTinyLfuPolicy: LRU order, promotion/demotion, byte accounting, admission."""

from __future__ import annotations

import random

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from sidecar.policy import (
    Admitter,
    AlwaysAdmit,
    EvictionCause,
    FrequencySketch,
    Segment,
    TinyLfuAdmitter,
    WindowTinyLfuPolicy,
)

SIZE, REJECTED = EvictionCause.SIZE, EvictionCause.REJECTED


class ScriptedAdmitter:
    """Answers admit() from a script and logs every question."""

    def __init__(self, answers: list[bool] | None = None) -> None:
        self.answers = list(answers or [])
        self.asked: list[tuple[str, str]] = []
        self.recorded: list[str] = []
        self.fitted: list[int] = []

    def record(self, key: str) -> None:
        self.recorded.append(key)

    def admit(self, candidate: str, victim: str) -> bool:
        self.asked.append((candidate, victim))
        return self.answers.pop(0) if self.answers else True

    def fit(self, entries: int) -> int:
        self.fitted.append(entries)
        return 2 * entries


def _filled(
    n: int = 10, window_fraction: float = 0.1, protected_fraction: float = 0.8
) -> WindowTinyLfuPolicy[str]:
    """max 100 bytes, window 10 (one 10-byte entry), main 90; keys k0..k{n-1} of 10 bytes."""
    policy: WindowTinyLfuPolicy[str] = WindowTinyLfuPolicy(
        100, AlwaysAdmit(), window_fraction, protected_fraction
    )
    for i in range(n):
        assert policy.add(f"k{i}", 10) == []
    return policy


def test_budgets() -> None:
    policy: WindowTinyLfuPolicy[str] = WindowTinyLfuPolicy(1000, AlwaysAdmit())
    assert policy.max_bytes == 1000
    assert policy.window_max_bytes == 10
    assert policy.protected_max_bytes == 792  # floor(990 * 0.8)


def test_window_is_lru_and_overflows_into_probation() -> None:
    policy: WindowTinyLfuPolicy[str] = WindowTinyLfuPolicy(1000, AlwaysAdmit(), 0.1)
    for key in "abcdefghij":  # 10 x 10 bytes fill the 100-byte window exactly
        assert policy.add(key, 10) == []
    assert policy.segment_keys("window") == list("abcdefghij")
    policy.on_hit("c")
    assert policy.segment_keys("window") == list("abdefghijc")
    assert policy.add("k", 10) == []
    assert policy.segment_keys("window") == list("bdefghijck")
    assert policy.segment_keys("probation") == ["a"]
    assert policy.segment_of("a") == "probation"


def test_probation_hit_promotes_and_protected_overflow_demotes() -> None:
    policy = _filled(protected_fraction=0.5)  # protected budget floor(90 * 0.5) = 45
    assert policy.segment_keys("window") == ["k9"]
    assert policy.segment_keys("probation") == [f"k{i}" for i in range(9)]
    for i in range(4):
        policy.on_hit(f"k{i}")
    assert policy.segment_keys("protected") == ["k0", "k1", "k2", "k3"]
    policy.on_hit("k4")  # protected would hold 50 > 45: its LRU goes back to probation MRU
    assert policy.segment_keys("protected") == ["k1", "k2", "k3", "k4"]
    assert policy.segment_keys("probation") == ["k5", "k6", "k7", "k8", "k0"]
    policy.on_hit("k1")  # protected hit: MRU
    assert policy.segment_keys("protected") == ["k2", "k3", "k4", "k1"]
    policy.on_hit("k9")  # window hit stays in the window
    assert policy.segment_of("k9") == "window"
    policy.on_hit("absent")  # ignored
    assert policy.segment_bytes("protected") == 40
    assert policy.segment_bytes("probation") == 50
    assert policy.used_bytes == 100


def test_victims_come_from_probation_lru_then_protected_lru() -> None:
    policy = _filled(protected_fraction=1.0)
    for i in (8, 7, 6, 5, 4, 3, 2):
        policy.on_hit(f"k{i}")  # protected LRU..MRU: k8 k7 ... k2; probation: k0 k1
    admitter = ScriptedAdmitter()
    policy._admitter = admitter
    evicted = policy.add("big", 40)  # window k9 then big go to main; big needs 4 victims
    assert admitter.asked == [("k9", "k0")] + [("big", v) for v in ("k1", "k9", "k8", "k7")]
    assert evicted == [("k0", SIZE), ("k1", SIZE), ("k9", SIZE), ("k8", SIZE), ("k7", SIZE)]
    assert policy.segment_keys("probation") == ["big"]
    assert policy.segment_keys("protected") == ["k6", "k5", "k4", "k3", "k2"]
    assert policy.segment_keys("window") == []
    assert policy.used_bytes == 90


def test_candidate_must_beat_every_victim_or_none_is_evicted() -> None:
    policy = _filled(window_fraction=0.0)  # no window: candidates go straight to main
    admitter = ScriptedAdmitter([True, True, False])
    policy._admitter = admitter
    assert policy.add("big", 30) == [("big", REJECTED)]
    assert [v for _, v in admitter.asked] == ["k0", "k1", "k2"]
    assert all(f"k{i}" in policy for i in range(10))
    assert "big" not in policy
    assert policy.used_bytes == 100


def test_byte_accounting_remove_and_update() -> None:
    policy = _filled(5)
    assert len(policy) == 5
    assert policy.used_bytes == 50
    assert policy.remove("k2") is True
    assert policy.remove("k2") is False
    assert "k2" not in policy
    assert policy.used_bytes == 40
    assert policy.update("k3", 25) == []
    assert policy.size_of("k3") == 25
    assert policy.used_bytes == 55
    assert policy.update("k4", 1) == []  # k4 is in the window: shrinking is enough
    assert policy.used_bytes == 46
    with pytest.raises(KeyError):
        policy.update("absent", 1)
    with pytest.raises(ValueError, match="already present"):
        policy.add("k3", 1)
    with pytest.raises(ValueError, match="size"):
        policy.add("new", -1)


def test_update_growth_evicts_main_lru_with_size() -> None:
    policy = _filled()
    assert policy.update("k5", 30) == [("k0", SIZE), ("k1", SIZE)]
    assert policy.used_bytes == 100
    assert policy.update("k5", 101) == [("k5", SIZE)]  # larger than the whole cache
    assert "k5" not in policy
    assert policy.used_bytes == 70


def test_oversized_and_window_bypassing_entries() -> None:
    policy: WindowTinyLfuPolicy[str] = WindowTinyLfuPolicy(100, AlwaysAdmit(), 0.05)
    assert policy.add("huge", 101) == [("huge", REJECTED)]
    assert "huge" not in policy
    assert policy.used_bytes == 0
    assert policy.add("big", 60) == []  # bigger than the 5-byte window: straight to main
    assert policy.segment_of("big") == "probation"
    assert policy.add("tiny", 5) == []  # fits the window: stays there
    assert policy.segment_of("tiny") == "window"
    # Within window_fraction of max_bytes: larger than main's 95-byte budget, so it is
    # rejected once it leaves the window (tiny, leaving first, still fits main).
    assert policy.add("whole", 100) == [("whole", REJECTED)]
    assert policy.segment_keys("probation") == ["big", "tiny"]
    assert policy.add("main-sized", 95) == [("big", SIZE), ("tiny", SIZE)]
    assert policy.segment_keys("probation") == ["main-sized"]


def test_zero_window_and_zero_budget() -> None:
    policy = _filled(3, window_fraction=0.0)
    assert policy.segment_keys("window") == []
    assert policy.segment_keys("probation") == ["k0", "k1", "k2"]
    empty: WindowTinyLfuPolicy[str] = WindowTinyLfuPolicy(0, AlwaysAdmit())
    assert empty.add("a", 0) == []
    assert empty.add("b", 1) == [("b", REJECTED)]


def _scan_survival(admitter: AlwaysAdmit | TinyLfuAdmitter) -> bool:
    """A hot key sits in probation of a full cache, then a one-hit-wonder scan comes."""
    policy: WindowTinyLfuPolicy[str] = WindowTinyLfuPolicy(100, admitter, window_fraction=0.1)
    for _ in range(20):  # 20 lookups while it is in the window: popular, not promoted
        policy.record("hot")
        if "hot" in policy:
            policy.on_hit("hot")
        else:
            policy.add("hot", 10)
    for i in range(9):  # fill: hot goes to probation, the cache is now full
        policy.record(f"fill{i}")
        policy.add(f"fill{i}", 10)
    assert policy.segment_of("hot") == "probation"
    assert policy.used_bytes == 100
    for i in range(200):
        policy.record(f"scan{i}")
        for key, _cause in policy.add(f"scan{i}", 10):
            assert key not in policy
    return "hot" in policy


def test_tinylfu_keeps_a_hot_key_through_a_scan_always_admit_does_not() -> None:
    sketch = FrequencySketch(1024)
    assert _scan_survival(TinyLfuAdmitter(sketch, random.Random(0))) is True
    assert _scan_survival(AlwaysAdmit()) is False


class FixedRandom(random.Random):
    """randrange() always returns ``value`` (0 wins the 1/128 anti-flooding coin)."""

    def __init__(self, value: int) -> None:
        super().__init__(0)
        self.value = value

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        return self.value


def test_tinylfu_admission_rule() -> None:
    sketch = FrequencySketch(1024)
    never, always = FixedRandom(1), FixedRandom(0)
    for _ in range(3):
        sketch.increment("three")
    for _ in range(6):
        sketch.increment("six")
    for _ in range(9):
        sketch.increment("nine")
    assert TinyLfuAdmitter(sketch, never).admit("six", "three") is True
    assert TinyLfuAdmitter(sketch, always).admit("three", "six") is False  # <= 5: no escape
    assert TinyLfuAdmitter(sketch, never).admit("six", "nine") is False
    assert TinyLfuAdmitter(sketch, always).admit("six", "nine") is True  # > 5: 1/128 escape
    assert TinyLfuAdmitter(sketch, never).admit("six", "six") is False  # ties keep the victim
    wins = sum(TinyLfuAdmitter(sketch, random.Random(s)).admit("six", "nine") for s in range(2000))
    assert 2 <= wins <= 40  # ~2000/128 = 15.6


def test_record_forwards_to_the_admitter() -> None:
    admitter = ScriptedAdmitter()
    policy: WindowTinyLfuPolicy[str] = WindowTinyLfuPolicy(100, admitter)
    policy.record("a")
    policy.record("b")
    assert admitter.recorded == ["a", "b"]


@pytest.mark.parametrize(
    "kwargs",
    [{"max_bytes": -1}, {"window_fraction": 1.5}, {"protected_fraction": -0.1}],
)
def test_bad_parameters(kwargs: dict[str, float]) -> None:
    args: dict[str, float] = {"max_bytes": 10, **kwargs}
    with pytest.raises(ValueError):
        WindowTinyLfuPolicy(int(args.pop("max_bytes")), AlwaysAdmit(), **args)


class RandomAdmitter:
    """Answers at random so both contest outcomes get exercised."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def record(self, key: object) -> None:
        pass

    def admit(self, candidate: object, victim: object) -> bool:
        return self.rng.random() < 0.5

    def fit(self, entries: int) -> int:
        return entries


KEYS = st.sampled_from([f"k{i}" for i in range(12)])
SIZES = st.integers(min_value=0, max_value=90)


class PolicyMachine(RuleBasedStateMachine):
    """Random operations against a model dict of present keys -> sizes."""

    policy: WindowTinyLfuPolicy[str]

    def __init__(self) -> None:
        super().__init__()
        self.model: dict[str, int] = {}

    @initialize(
        max_bytes=st.integers(min_value=0, max_value=200),
        window_fraction=st.sampled_from([0.0, 0.01, 0.1, 0.3, 1.0]),
        protected_fraction=st.sampled_from([0.0, 0.5, 0.8, 1.0]),
        admitter_kind=st.sampled_from(["always", "tinylfu", "random"]),
        rng=st.randoms(use_true_random=False),
    )
    def setup(self, max_bytes, window_fraction, protected_fraction, admitter_kind, rng):
        admitters: dict[str, Admitter[str]] = {
            "always": AlwaysAdmit(),
            "tinylfu": TinyLfuAdmitter(FrequencySketch(16), rng),
            "random": RandomAdmitter(rng),
        }
        admitter = admitters[admitter_kind]
        self.policy = WindowTinyLfuPolicy(max_bytes, admitter, window_fraction, protected_fraction)

    def _dropped(self, evicted: list[tuple[str, EvictionCause]]) -> None:
        for key, cause in evicted:
            assert cause in (SIZE, REJECTED)
            assert key not in self.policy
            self.model.pop(key, None)

    @rule(key=KEYS)
    def lookup(self, key):
        self.policy.record(key)
        if key in self.policy:
            self.policy.on_hit(key)

    @rule(key=KEYS, size=SIZES)
    def add(self, key, size):
        if key in self.model:
            with pytest.raises(ValueError):
                self.policy.add(key, size)
            return
        self.model[key] = size
        self._dropped(self.policy.add(key, size))

    @rule(key=KEYS)
    def remove(self, key):
        assert self.policy.remove(key) is (self.model.pop(key, None) is not None)

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data(), size=SIZES)
    def update(self, data, size):
        key = data.draw(st.sampled_from(sorted(self.model)))
        self.model[key] = size
        self._dropped(self.policy.update(key, size))

    @invariant()
    def accounting(self):
        policy = self.policy
        names: tuple[Segment, ...] = ("window", "probation", "protected")
        segments = {s: policy.segment_keys(s) for s in names}
        every = [k for keys in segments.values() for k in keys]
        assert sorted(every) == sorted(self.model)  # each present key in exactly one segment
        assert len(policy) == len(self.model)
        for name, keys in segments.items():
            assert policy.segment_bytes(name) == sum(self.model[k] for k in keys)
            assert all(policy.segment_of(k) == name for k in keys)
        assert all(policy.size_of(k) == size for k, size in self.model.items())
        assert policy.used_bytes == sum(self.model.values()) <= policy.max_bytes
        assert policy.segment_bytes("window") <= policy.window_max_bytes
        assert policy.segment_bytes("protected") <= policy.protected_max_bytes


PolicyMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
test_policy_invariants = PolicyMachine.TestCase


def test_the_admitter_is_told_the_entry_count_as_it_outgrows_each_answer() -> None:
    """The policy asks the admitter to fit when the entries pass the count it answered
    (2x here), not on every add: 1 (> 0), 3 (> 2), 7 (> 6)."""
    admitter = ScriptedAdmitter()
    policy = WindowTinyLfuPolicy[str](10_000, admitter)
    for i in range(8):
        policy.add(f"k{i}", 1)
    assert admitter.fitted == [1, 3, 7]

"""What the sidecar counts for `strata cost`: the memory tier's footprint now, bytes written by
stage, admission refusals, body bytes served; and how they are exported."""

from __future__ import annotations

import json

from prometheus_client import CollectorRegistry, generate_latest

from sidecar.core.clock import ManualClock
from sidecar.core.model import CachedResponse, Footprint, TierSnapshot, Written, logical_bytes
from sidecar.core.observer import NullObserver
from sidecar.engine.engine import Engine
from sidecar.engine.placement import PlacementPolicy
from sidecar.observability.metrics import PrometheusObserver, TierCollector
from sidecar.policy import WindowTinyLfuPolicy
from sidecar.tiers import codec
from sidecar.tiers.memory import INLINE_BODY_BYTES, MemoryTier
from tests.support.entries import JSON_HEADERS, entry
from tests.support.tier_roles import role_tier

#: A compressible JSON body well above the inline limit.
BODY = json.dumps([{"id": i, "name": f"product {i}"} for i in range(200)]).encode()


class Recorder(NullObserver):
    def __init__(self) -> None:
        self.written_events: list[tuple[str, Written]] = []
        self.refused: list[tuple[str, int]] = []
        self.served_events: list[tuple[str, str, int]] = []

    def written(self, tier: str, written: Written) -> None:
        self.written_events.append((tier, written))

    def admission_refused(self, tier: str, logical_bytes: int) -> None:
        self.refused.append((tier, logical_bytes))

    def served(self, outcome: str, tier: str, body_bytes: int) -> None:
        self.served_events.append((outcome, tier, body_bytes))


class RejectAll:
    """An admitter that refuses every candidate leaving the window."""

    def record(self, key: bytes) -> None:
        pass

    def admit(self, candidate: bytes, victim: bytes) -> bool:
        return False

    def fit(self, entries: int) -> int:
        return entries


def _entry(clock: ManualClock, body: bytes) -> CachedResponse:
    return entry(clock, body, headers=JSON_HEADERS, ttl_ms=3_600_000)


async def test_the_memory_footprint_counts_dedup_and_compression(clock: ManualClock) -> None:
    obs = Recorder()
    tier = MemoryTier(8 * 1024**2, clock, observer=obs)
    keys = [b"k%d" % i for i in range(3)]
    for key in keys:
        await tier.set(key, _entry(clock, BODY))
    small = b"s" * 10
    await tier.set(b"small", _entry(clock, small))

    f = tier.snapshot().footprint
    assert f is not None
    header = len(b"content-type") + len(b"application/json")
    assert f.logical == sum(len(k) + header + len(BODY) for k in keys) + 5 + header + 10
    assert f.body == 3 * len(BODY) + 10
    assert f.body_distinct == len(BODY) + 10
    stored = len(codec.compress_body(BODY)[0])
    assert f.body_stored == stored + 10 < len(BODY)

    # the first write of a body is new; the next two share it
    news = [w.body_new for _, w in obs.written_events]
    assert news == [len(BODY), 0, 0, 10]
    assert [w.body_stored for _, w in obs.written_events] == [stored, 0, 0, 10]
    assert obs.written_events[0][1].logical == logical_bytes(keys[0], _entry(clock, BODY))

    # leaving keys leave the footprint; the last one frees the body
    await tier.delete(keys[0])
    await tier.set(keys[1], _entry(clock, b"r" * INLINE_BODY_BYTES))  # replaced, inline now
    f = tier.snapshot().footprint
    assert f is not None
    assert f.body == len(BODY) + INLINE_BODY_BYTES + 10
    assert f.body_distinct == len(BODY) + INLINE_BODY_BYTES + 10
    await tier.delete(keys[2])
    f = tier.snapshot().footprint
    assert f == Footprint(
        logical=len(keys[1]) + header + INLINE_BODY_BYTES + 5 + header + 10,
        body=INLINE_BODY_BYTES + 10,
        body_distinct=INLINE_BODY_BYTES + 10,
        body_stored=INLINE_BODY_BYTES + 10,
    )
    await tier.close()
    assert tier.snapshot().footprint == Footprint(0, 0, 0, 0)


async def test_entries_the_admission_filter_refuses_are_counted(clock: ManualClock) -> None:
    obs = Recorder()
    tier = MemoryTier(
        64 * 1024,
        clock,
        observer=obs,
        policy_factory=lambda max_bytes, _: WindowTinyLfuPolicy(max_bytes, RejectAll()),
    )
    for i in range(200):
        await tier.set(b"key-%03d" % i, _entry(clock, b"%03d" % i * 100))
    assert obs.refused, "nothing was refused"
    assert all(t == "memory" for t, _ in obs.refused)
    one = logical_bytes(b"key-000", _entry(clock, b"000" * 100))
    assert {n for _, n in obs.refused} == {one}
    snap = tier.snapshot()
    assert snap.footprint is not None and snap.footprint.body == 300 * snap.entries
    assert len(obs.refused) + snap.entries == 200  # every key either stayed or was refused


async def test_hits_report_their_body_and_cold_keys_are_kept_out_of_shared_ram(
    clock: ManualClock,
) -> None:
    obs = Recorder()
    memory = MemoryTier(8 * 1024**2, clock)
    redis = role_tier("redis", clock)
    engine = Engine(
        [memory, redis], clock, observer=obs, placement=PlacementPolicy(shared_min_hits=2)
    )
    stored = _entry(clock, BODY)
    await engine.store(b"cold", stored)  # never looked up: not hot enough for Redis
    assert obs.refused == [("redis", logical_bytes(b"cold", stored))]
    assert (await engine.lookup(b"cold")).entry is not None
    await engine.lookup(b"absent")
    assert obs.served_events == [("hit", "memory", len(BODY))]
    obs.refused.clear()
    await engine.lookup(b"cold")
    await engine.store(b"cold", stored)  # looked up twice now: hot, placed in Redis
    assert obs.refused == []


def test_the_metrics_page_carries_the_cost_families() -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    footprint = Footprint(logical=400, body=300, body_distinct=200, body_stored=50)
    registry.register(
        TierCollector(
            lambda: [
                TierSnapshot("memory", 1, 100, 1000, footprint=footprint),
                TierSnapshot("redis", 0, 5000, 0),
            ]
        )
    )
    observer.served("hit", "memory", 700)
    observer.served("hit", "memory", 300)
    observer.written("redis", Written(10, 8, 6, 2, 5))
    observer.admission_refused("memory", 42)
    page = generate_latest(registry).decode()
    for line in (
        'strata_served_body_bytes_total{outcome="hit",tier="memory"} 1000.0',
        'strata_tier_written_bytes_total{stage="logical",tier="redis"} 10.0',
        'strata_tier_written_bytes_total{stage="body_new",tier="redis"} 6.0',
        'strata_tier_written_bytes_total{stage="body_stored",tier="redis"} 2.0',
        'strata_admission_refused_bytes_total{tier="memory"} 42.0',
        'strata_tier_logical_bytes{tier="memory"} 400.0',
        'strata_tier_body_bytes{stage="distinct",tier="memory"} 200.0',
        'strata_tier_body_bytes{stage="stored",tier="memory"} 50.0',
    ):
        assert line in page, line
    assert 'strata_tier_logical_bytes{tier="redis"}' not in page  # unknown, not 0
    assert "process_start_time_seconds" in page


def test_stored_body_len_reads_values_references_and_blobs(clock: ManualClock) -> None:
    e = _entry(clock, BODY)
    compressed = len(codec.compress_body(BODY)[0])
    assert codec.stored_body_len(codec.encode(e)) == compressed
    value, body = codec.encode_split(e, 64)
    assert body is not None
    assert codec.stored_body_len(value) == 0  # a reference holds no body
    assert codec.stored_body_len(body[1]) == compressed
    raw = _entry(clock, b"tiny")
    assert codec.stored_body_len(b"pfx" + codec.encode(raw), 3) == 4

"""`Invalidations` without Kafka or tiers: submit applies and publishes once, receive applies
each event once per id, refuses bad events with their reason, and counts everything."""

from __future__ import annotations

import json

import pytest

from sidecar.cluster.kafka_consumer import BadEvent, Position
from sidecar.core.clock import ManualClock
from sidecar.core.errors import InvalidRequestError
from sidecar.core.limits import Limits
from sidecar.core.observer import RecordingObserver
from sidecar.events import MAX_EVENT_BYTES, InvalidationEvent, Reason, event_id, parse
from sidecar.invalidation import Invalidations
from sidecar.invalidation.service import once_key
from tests.support.purge_engine import FakePurgeEngine

NODE = "node-a"


class FakePublisher:
    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.sent: list[tuple[bytes | None, bytes]] = []

    def publish(self, key: bytes | None, value: bytes) -> bool:
        self.sent.append((key, value))
        return self.keep


def at(offset: int, partition: int = 0) -> Position:
    return Position("strata.invalidations", partition, offset)


def raw(**fields: object) -> bytes:
    return json.dumps({"v": 1, **fields}).encode()


@pytest.fixture
def engine() -> FakePurgeEngine:
    return FakePurgeEngine()


@pytest.fixture
def observer() -> RecordingObserver:
    return RecordingObserver()


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def service(
    engine: FakePurgeEngine,
    clock: ManualClock,
    observer: RecordingObserver,
    publisher: FakePublisher,
) -> Invalidations:
    return Invalidations(engine, NODE, clock, observer, publisher=publisher)


def once_of(event_id: str, **fields: object) -> str:
    """The once-key of an event with `event_id` purging `fields`."""
    once = once_key(InvalidationEvent(id=event_id, **fields))  # type: ignore[arg-type]
    assert once is not None and once.startswith(event_id + "#")
    return once


def _kinds(observer: RecordingObserver, kind: str) -> list[tuple[object, ...]]:
    return [e for e in observer.events if e[0] == kind]


async def test_submit_fills_id_origin_ts_applies_once_and_publishes_once(
    service: Invalidations,
    engine: FakePurgeEngine,
    publisher: FakePublisher,
    clock: ManualClock,
    observer: RecordingObserver,
) -> None:
    done = await service.submit(InvalidationEvent(tags=("products:42",), origin="someone"))
    assert done.queued and done.dropped == 1 and done.id
    assert engine.calls == [
        ("purge_tags", ("products:42",), False, once_of(done.id, tags=("products:42",)))
    ]
    assert len(publisher.sent) == 1
    key, value = publisher.sent[0]
    sent = parse(value)
    assert key == NODE.encode()
    assert (sent.id, sent.origin, sent.ts, sent.tags) == (
        done.id,
        NODE,
        clock.now_ms(),
        ("products:42",),
    )
    assert _kinds(observer, "event_applied") == [("event_applied", "local", None)]


async def test_submit_keeps_the_callers_id(service: Invalidations, engine: FakePurgeEngine) -> None:
    done = await service.submit(InvalidationEvent(urls=("/a",), id="release-7"))
    assert done.id == "release-7"
    assert engine.calls[0][-1] == once_of("release-7", urls=("/a",))


async def test_without_kafka_submit_applies_and_queues_nothing(
    engine: FakePurgeEngine, clock: ManualClock
) -> None:
    local = Invalidations(engine, NODE, clock)
    done = await local.submit(InvalidationEvent(tags=("t",)))
    assert not done.queued and len(engine.calls) == 1


async def test_an_outbox_refusal_is_reported_not_raised(
    engine: FakePurgeEngine, clock: ManualClock
) -> None:
    service = Invalidations(engine, NODE, clock, publisher=FakePublisher(keep=False))
    done = await service.submit(InvalidationEvent(tags=("t",)))
    assert not done.queued and done.dropped == 1


async def test_own_event_read_back_does_not_purge_twice(
    service: Invalidations,
    engine: FakePurgeEngine,
    publisher: FakePublisher,
    observer: RecordingObserver,
) -> None:
    await service.submit(InvalidationEvent(tags=("t",)))
    await service.receive(publisher.sent[0][1], at(0))
    assert len(engine.calls) == 1
    assert ("event_received", "own") in observer.events
    assert ("event_replay_skipped", "own") in observer.events


async def test_own_event_read_after_a_restart_is_applied_with_the_same_once(
    service: Invalidations,
    engine: FakePurgeEngine,
    publisher: FakePublisher,
    clock: ManualClock,
    observer: RecordingObserver,
) -> None:
    done = await service.submit(InvalidationEvent(tags=("t",)))
    restarted = Invalidations(engine, NODE, clock, observer)  # no memory of the submit
    await restarted.receive(publisher.sent[0][1], at(0))
    once = once_of(done.id, tags=("t",))
    assert [c[-1] for c in engine.calls] == [once, once]
    assert engine.skipped_shared == [once]  # the shared bump is not repeated
    assert ("event_applied", "own", 0.0) in observer.events


async def test_a_replayed_event_is_skipped_and_counted(
    service: Invalidations, engine: FakePurgeEngine, observer: RecordingObserver
) -> None:
    message = raw(tags=["t"], id="e-1", origin="elsewhere")
    await service.receive(message, at(5))
    await service.receive(message, at(5))  # redelivered
    await service.receive(message, at(9))  # published again
    assert engine.calls == [("purge_tags", ("t",), False, once_of("e-1", tags=("t",)))]
    assert _kinds(observer, "event_replay_skipped") == [("event_replay_skipped", "remote")] * 2
    assert _kinds(observer, "event_received") == [("event_received", "remote")] * 3


async def test_events_without_id_are_keyed_by_content_and_position(
    service: Invalidations, engine: FakePurgeEngine
) -> None:
    message = raw(tags=["t"])
    await service.receive(message, at(1))
    await service.receive(message, at(1))  # the same message again: skipped
    await service.receive(message, at(2))  # the same purge sent twice: applied twice
    digest = event_id(parse(message))
    assert [c[-1] for c in engine.calls] == [
        f"{digest}@strata.invalidations/0/1",
        f"{digest}@strata.invalidations/0/2",
    ]


async def test_the_recent_ids_are_bounded(engine: FakePurgeEngine, clock: ManualClock) -> None:
    service = Invalidations(engine, NODE, clock, max_recent_ids=2)
    for i in range(3):
        await service.receive(raw(tags=["t"], id=f"e{i}"), at(i))
    await service.receive(raw(tags=["t"], id="e0"), at(3))  # forgotten: applied again
    await service.receive(raw(tags=["t"], id="e2"), at(4))  # remembered: skipped
    assert [c[-1] for c in engine.calls] == [
        once_of(i, tags=("t",)) for i in ("e0", "e1", "e2", "e0")
    ]


async def test_apply_lag_is_measured_from_ts(
    service: Invalidations, clock: ManualClock, observer: RecordingObserver
) -> None:
    await service.receive(raw(tags=["t"], ts=clock.now_ms() - 250, id="x"), at(0))
    await service.receive(raw(tags=["t"], id="y"), at(1))
    assert _kinds(observer, "event_applied") == [
        ("event_applied", "remote", 0.25),
        ("event_applied", "remote", None),
    ]


#: A message refused for each reason.
BAD: dict[Reason, bytes] = {
    Reason.TOO_LARGE: b'{"v":1,"tags":["t"],"x":"' + b"a" * MAX_EVENT_BYTES + b'"}',
    Reason.BAD_ENCODING: b'{"v":1,"tags":["caf\xe9"]}',
    Reason.MALFORMED_JSON: b'{"v":1,',
    Reason.TOO_DEEP: b'{"v":1,"tags":["t"],"x":' + b"[" * 40 + b"]" * 40 + b"}",
    Reason.DUPLICATE_KEY: b'{"v":1,"v":1,"tags":["t"]}',
    Reason.NOT_AN_OBJECT: b"[1]",
    Reason.MISSING_VERSION: b'{"tags":["t"]}',
    Reason.UNSUPPORTED_VERSION: b'{"v":2,"tags":["t"]}',
    Reason.WRONG_TYPE: b'{"v":1,"tags":"t"}',
    Reason.TOO_MANY_ITEMS: raw(tags=["t"] * 1001),
    Reason.TOO_LONG: raw(tags=["x" * 300]),
    Reason.BAD_VALUE: raw(urls=["no-slash"]),
    Reason.SOFT_KEY_PURGE: raw(keys=["v1:r:k"], soft=True),
    Reason.EMPTY: raw(tags=[]),
}


def test_every_reason_has_a_sample() -> None:
    assert set(BAD) == set(Reason)


@pytest.mark.parametrize("reason", list(BAD), ids=[r.value for r in BAD])
async def test_a_bad_event_is_refused_with_its_reason_and_counted(
    service: Invalidations, engine: FakePurgeEngine, observer: RecordingObserver, reason: Reason
) -> None:
    with pytest.raises(BadEvent) as caught:
        await service.receive(BAD[reason], at(3))
    assert caught.value.reason == reason.value
    assert observer.events == [("event_rejected", reason.value)]
    assert engine.calls == []


async def test_after_a_bad_event_the_next_good_one_is_applied(
    service: Invalidations, engine: FakePurgeEngine
) -> None:
    with pytest.raises(BadEvent):
        await service.receive(b"not json", at(0))
    await service.receive(raw(tags=["t"]), at(1))
    assert len(engine.calls) == 1


async def test_extension_fields_reach_the_engine(
    service: Invalidations, engine: FakePurgeEngine
) -> None:
    await service.receive(
        raw(
            id="x",
            tags=["t"],
            routes=["v1:rt:"],
            keys=["v1:rt:GET:/a"],
            key_prefixes=["v1:rt:GET:/b/"],
        ),
        at(0),
    )
    assert engine.calls == [
        (
            "purge_tags",
            ("t", "route:v1:rt:"),
            False,
            once_of(
                "x",
                tags=("t",),
                routes=("v1:rt:",),
                keys=("v1:rt:GET:/a",),
                key_prefixes=("v1:rt:GET:/b/",),
            ),
        ),
        ("invalidate_key", b"v1:rt:GET:/a", "local"),
        ("invalidate_prefix", b"v1:rt:GET:/b/", "local"),
    ]


async def test_a_soft_route_purge_is_a_soft_purge_of_its_tag(
    service: Invalidations, engine: FakePurgeEngine
) -> None:
    await service.submit(InvalidationEvent(routes=("v1:rt:",), soft=True, id="s"))
    assert engine.calls == [
        ("purge_tags", ("route:v1:rt:",), True, once_of("s", routes=("v1:rt:",), soft=True))
    ]


async def test_flush_all_is_one_purge_all(service: Invalidations, engine: FakePurgeEngine) -> None:
    await service.receive(raw(flush="*", tags=["t"], keys=["k"], id="f"), at(0))
    await service.receive(raw(flush="*", routes=["r"], soft=True, id="g"), at(1))
    assert engine.calls == [
        ("purge_all", False, once_of("f", flush="*", tags=("t",), keys=("k",))),
        ("purge_all", True, once_of("g", flush="*", routes=("r",), soft=True)),
    ]


async def test_a_received_item_over_this_nodes_limits_is_refused_the_rest_applied(
    clock: ManualClock, observer: RecordingObserver
) -> None:
    engine = FakePurgeEngine(Limits(max_key_bytes=64))
    service = Invalidations(engine, NODE, clock, observer)
    await service.receive(raw(keys=["k" * 65, "short"], tags=["t"], id="i"), at(0))
    once = once_of("i", keys=("k" * 65, "short"), tags=("t",))
    assert engine.calls == [
        ("purge_tags", ("t",), False, once),
        ("invalidate_key", b"short", "local"),
    ]
    assert ("event_rejected", "engine_refused") in observer.events
    assert ("event_applied", "remote", None) in observer.events


async def test_submit_refuses_before_applying_or_publishing(
    clock: ManualClock, publisher: FakePublisher
) -> None:
    engine = FakePurgeEngine(Limits(max_key_bytes=64))
    service = Invalidations(engine, NODE, clock, publisher=publisher)
    with pytest.raises(InvalidRequestError) as caught:
        await service.submit(InvalidationEvent(tags=("t",), keys=("k" * 65,)))
    assert caught.value.field == "keys[0]" and caught.value.reason == "key_too_long"
    big = Invalidations(FakePurgeEngine(), NODE, clock, publisher=publisher)
    with pytest.raises(InvalidRequestError) as too_large:
        await big.submit(InvalidationEvent(keys=tuple(f"{i:03}" + "k" * 1100 for i in range(999))))
    assert too_large.value.reason == "too_large"
    assert engine.calls == [] and publisher.sent == []


async def test_a_reused_id_with_another_purge_is_applied(
    service: Invalidations, engine: FakePurgeEngine
) -> None:
    first = await service.submit(InvalidationEvent(tags=("a",), id="deploy-1"))
    second = await service.submit(InvalidationEvent(tags=("b",), id="deploy-1"))
    assert not first.duplicate and not second.duplicate
    assert engine.skipped_shared == []
    assert [c[1] for c in engine.calls] == [("a",), ("b",)]


async def test_the_same_id_and_purge_again_is_reported_a_duplicate(
    service: Invalidations, engine: FakePurgeEngine
) -> None:
    await service.submit(InvalidationEvent(tags=("a",), id="deploy-1"))
    again = await service.submit(InvalidationEvent(tags=("a",), id="deploy-1", origin="x"))
    assert again.duplicate and again.id == "deploy-1"
    assert engine.skipped_shared == [once_of("deploy-1", tags=("a",))]


async def test_a_guessed_id_cannot_suppress_another_purge(
    engine: FakePurgeEngine, clock: ManualClock
) -> None:
    shared: set[str] = set()
    node_a = Invalidations(FakePurgeEngine(shared_once=shared), "a", clock)
    node_b = Invalidations(FakePurgeEngine(shared_once=shared), "b", clock)
    await node_a.receive(raw(tags=["junk"], id="dbz:t:0:99"), at(1))  # claimed ahead of time
    await node_b.receive(raw(tags=["products:42"], id="dbz:t:0:99"), at(2))  # the real one
    assert len(shared) == 2  # two claims: the real purge bumped


async def test_submitted_keys_reach_every_tier_received_ones_the_memory_only(
    service: Invalidations, engine: FakePurgeEngine
) -> None:
    await service.submit(InvalidationEvent(keys=("k",), key_prefixes=("p",)))
    await service.receive(raw(keys=["k"], key_prefixes=["p"]), at(0))
    assert engine.calls == [
        ("invalidate_key", b"k"),
        ("invalidate_prefix", b"p"),
        ("invalidate_key", b"k", "local"),
        ("invalidate_prefix", b"p", "local"),
    ]


def _slow_shape() -> bytes:
    """A valid event of about 1 MiB whose ignored field is half a million numbers: among
    the slowest valid shapes to parse per byte (hundreds of thousands of empty arrays are
    slower, but refused by their count before decoding)."""
    inner = b",".join([b"0"] * 520_000)
    return b'{"v":1,"tags":["slow"],"x":[' + inner + b"]}"


async def test_a_large_event_is_parsed_off_the_event_loop(
    service: Invalidations, engine: FakePurgeEngine
) -> None:
    import asyncio  # noqa: PLC0415
    import time  # noqa: PLC0415

    value = _slow_shape()
    assert len(value) <= MAX_EVENT_BYTES
    started = time.perf_counter()
    parse(value)
    assert time.perf_counter() - started >= 0.05  # slow enough that inline would show
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    for i in range(3):
        await service.receive(value, at(i))
    done.set()
    await task
    assert [c[1] for c in engine.calls] == [("slow",)] * 3
    # Inline, each parse would be one gap of 0.1-0.2 s; off the loop, with the yielding
    # decoder, the loop gets the interpreter every switch interval (about 10 ms measured).
    assert max(gaps) < 0.05, max(gaps)


async def test_a_flood_of_empty_arrays_is_refused_before_decoding(
    service: Invalidations, engine: FakePurgeEngine
) -> None:
    value = b'{"v":1,"tags":["t"],"x":[' + b",".join([b"[]"] * 340_000) + b"]}"
    with pytest.raises(BadEvent) as caught:
        await service.receive(value, at(0))
    assert caught.value.reason == Reason.TOO_MANY_ITEMS.value
    assert engine.calls == []

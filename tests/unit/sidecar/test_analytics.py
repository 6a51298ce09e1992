"""sidecar.analytics: the checks of a plugin's event, its JSON, the ReportAccess logic
(queue bound, disabled) and the gRPC bounds of a hostile batch. No broker here."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import grpc
import jsonschema
import pytest
from strata.v1 import cache_pb2 as pb

from sidecar.analytics.event import check, encode
from sidecar.analytics.metrics import AnalyticsCollector
from sidecar.analytics.service import DROP_REASONS, OFF, Analytics, PublisherStats
from sidecar.app import build_engine
from sidecar.config import SidecarConfig
from sidecar.core.clock import SystemClock
from sidecar.core.observer import NullObserver
from sidecar.rpc.bounds import RpcLimits
from sidecar.rpc.intake import Intake, TooManyElements
from sidecar.rpc.service import CacheService

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[3] / "schema" / "strata.access.v1.schema.json").read_text()
)
NOW_MS = 1_765_000_000_000


def event(**fields: Any) -> pb.AccessEvent:
    values: dict[str, Any] = {
        "time_ms": NOW_MS - 5,
        "route_id": "route-1",
        "method": "GET",
        "status": 200,
        "cache_result": "hit",
        "tier": "memory",
        "bytes": 10,
        "latency_ms": 0.5,
        "key_hash": "0123456789abcdef",
        "phase": "access",
    }
    values.update(fields)
    return pb.AccessEvent(**values)


class QueuePublisher:
    """A publisher with room for `room` messages."""

    enabled = True

    def __init__(self, room: int) -> None:
        self.room = room
        self.messages: list[tuple[bytes | None, bytes]] = []
        self.full = 0

    def publish(self, key: bytes | None, value: bytes) -> bool:
        if len(self.messages) >= self.room:
            self.full += 1
            return False
        self.messages.append((key, value))
        return True

    def stats(self) -> PublisherStats:
        return PublisherStats(len(self.messages), {"queue-full": self.full}, 0)


# -- checks ---------------------------------------------------------------------------


def test_a_plausible_event_passes() -> None:
    assert check(event(), NOW_MS) is None
    assert check(event(status=0, bytes=-1, cache_result="", tier="", key_hash=""), NOW_MS) is None


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"time_ms": 0}, "time_ms"),
        ({"time_ms": -1}, "time_ms"),
        ({"time_ms": NOW_MS + 2 * 86_400_000}, "time_ms"),
        ({"latency_ms": float("nan")}, "latency_ms"),
        ({"latency_ms": float("inf")}, "latency_ms"),
        ({"latency_ms": -0.1}, "latency_ms"),
        ({"latency_ms": 1e12}, "latency_ms"),
        ({"bytes": -2}, "bytes"),
        ({"bytes": 1 << 50}, "bytes"),
        ({"status": 42}, "status"),
        ({"status": 1000}, "status"),
        ({"method": ""}, "method"),
        ({"method": "G E T"}, "method"),
        ({"method": "X" * 33}, "method"),
        ({"route_id": "r" * 129}, "route_id"),
        ({"route_id": "r\n1"}, "route_id"),
        ({"consumer_id": "c" * 1_000_000}, "consumer_id"),
        ({"cache_result": "HIT"}, "cache_result"),
        ({"cache_detail": "has space"}, "cache_detail"),
        ({"tier": "t" * 33}, "tier"),
        ({"key_hash": "ABCDEF0123456789"}, "key_hash"),
        ({"key_hash": "v2:route:/secret"}, "key_hash"),
        ({"phase": ""}, "phase"),
        ({"phase": "header_filter"}, "phase"),
    ],
)
def test_each_field_out_of_bounds_is_named(fields: dict[str, Any], field: str) -> None:
    invalid = check(event(**fields), NOW_MS)
    assert invalid is not None and invalid.field == field


def test_the_json_holds_only_schema_fields_and_omits_the_unknown_ones() -> None:
    key, value = encode(event(cache_result="", tier="", bytes=-1, key_hash=""), "node-a")
    doc = json.loads(value)
    assert key is None
    assert doc == {
        "v": 1,
        "time": "2025-12-06T05:46:39.995Z",
        "node_id": "node-a",
        "route_id": "route-1",
        "method": "GET",
        "status": 200,
        "cache_result": "none",
        "latency_ms": 0.5,
        "phase": "access",
    }
    jsonschema.validate(doc, SCHEMA, format_checker=jsonschema.FormatChecker())
    key, value = encode(event(consumer_id="c-1", service_id="s-1", cache_detail="stored"), "n")
    assert key == b"0123456789abcdef"
    jsonschema.validate(json.loads(value), SCHEMA, format_checker=jsonschema.FormatChecker())


def test_the_schema_refuses_what_the_checks_refuse() -> None:
    _, value = encode(event(), "node-a")
    doc = json.loads(value)
    for bad in ({"latency_ms": -1}, {"status": 42}, {"phase": "x"}, {"key": "v2:/a"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**doc, **bad}, SCHEMA)


# -- ReportAccess ---------------------------------------------------------------------


def test_off_answers_disabled_and_counts_every_event_dropped() -> None:
    analytics = Analytics("node-a", OFF)
    ack = asyncio.run(analytics.report(pb.AccessBatch(events=[event()] * 5)))
    assert ack.disabled and ack.retry_after_ms == 60_000 and ack.accepted == 0
    s = analytics.stats()
    assert (s.received, s.dropped["disabled"], s.published) == (5, 5, 0)


def test_valid_events_are_queued_invalid_refused_and_a_full_queue_drops() -> None:
    publisher = QueuePublisher(room=3)
    analytics = Analytics("node-a", publisher, clock=lambda: NOW_MS / 1000)
    events = [event(), event(latency_ms=float("nan")), event(), event(), event(), event()]
    ack = asyncio.run(analytics.report(pb.AccessBatch(events=events)))
    assert (ack.accepted, ack.rejected, ack.dropped, ack.disabled) == (3, 1, 2, False)
    s = analytics.stats()
    assert (s.received, s.published) == (6, 3)
    assert s.dropped == {
        "invalid": 1,
        "disabled": 0,
        "rate-limited": 0,
        "queue-full": 2,
        "broker-unavailable": 0,
    }
    assert s.received == s.published + sum(s.dropped.values())
    assert all(json.loads(v)["node_id"] == "node-a" for _, v in publisher.messages)


def test_a_large_batch_gives_the_event_loop_back_while_it_is_checked() -> None:
    analytics = Analytics("node-a", QueuePublisher(room=10_000), clock=lambda: NOW_MS / 1000)
    ticks = 0

    async def main() -> pb.AccessAck:
        nonlocal ticks

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        ack = await analytics.report(pb.AccessBatch(events=[event()] * 1024))
        task.cancel()
        return ack

    assert asyncio.run(main()).accepted == 1024
    assert ticks >= 1024 // 64 - 1


def test_the_metrics_have_every_reason() -> None:
    analytics = Analytics("node-a", OFF)
    families = {f.name: f for f in AnalyticsCollector(analytics.stats).collect()}
    assert set(families) == {
        "strata_analytics_events_received",
        "strata_analytics_events_published",
        "strata_analytics_events_dropped",
        "strata_analytics_queue_events",
    }
    reasons = {s.labels["reason"] for s in families["strata_analytics_events_dropped"].samples}
    assert reasons == set(DROP_REASONS)


# -- hostile batches at the gRPC surface --------------------------------------------------


def test_a_million_event_batch_is_refused_unparsed_by_the_wire_scan() -> None:
    limits = RpcLimits()
    data = pb.AccessBatch(events=[pb.AccessEvent()] * 1_000_000).SerializeToString()
    started = time.perf_counter()
    got = Intake(limits).deserializer(pb.AccessBatch)(data)
    assert isinstance(got, TooManyElements) and got.reason == "too_many_events"
    assert got.excess.path == "events" and got.excess.limit == limits.max_report_events
    assert time.perf_counter() - started < 1.0  # stops at the first event over the limit


class Context:
    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    def add_done_callback(self, callback: Any) -> None:
        pass

    def time_remaining(self) -> float | None:
        return None


def test_a_small_batch_over_the_limit_is_refused_whole_and_counted() -> None:
    config = SidecarConfig()
    engine = build_engine(config, SystemClock(), NullObserver())
    publisher = QueuePublisher(room=10_000)
    service = CacheService(engine, RpcLimits(), analytics=Analytics("n", publisher))
    context = Context()
    over = pb.AccessBatch(events=[pb.AccessEvent()] * 1025)  # 2 KB: parsed, then refused
    assert asyncio.run(service.ReportAccess(over, context)) is None
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT
    assert context.details.startswith("events: more than 1024")
    assert engine.counters.rejected_requests == 1 and publisher.messages == []
    ok = asyncio.run(
        service.ReportAccess(
            pb.AccessBatch(events=[event(time_ms=int(time.time() * 1000))]), Context()
        )
    )
    assert ok is not None and ok.accepted == 1


def test_a_sidecar_without_analytics_answers_disabled_through_the_service() -> None:
    engine = build_engine(SidecarConfig(), SystemClock(), NullObserver())
    service = CacheService(engine)
    ack = asyncio.run(service.ReportAccess(pb.AccessBatch(events=[event()]), Context()))
    assert ack is not None and ack.disabled


def test_reports_beyond_the_in_flight_limit_are_refused_and_lookups_keep_their_turn() -> None:
    engine = build_engine(SidecarConfig(), SystemClock(), NullObserver())
    release = asyncio.Event()

    class Slow(Analytics):
        async def report(self, batch: pb.AccessBatch) -> pb.AccessAck:
            await release.wait()  # a report being handled holds its place
            return pb.AccessAck(accepted=len(batch.events))

    service = CacheService(
        engine,
        RpcLimits(max_reports_in_flight=2),
        analytics=Slow("n", QueuePublisher(room=10)),
    )

    async def run() -> list[tuple[pb.AccessAck | None, Context]]:
        contexts = [Context() for _ in range(3)]
        calls = [
            asyncio.create_task(service.ReportAccess(pb.AccessBatch(events=[event()]), c))
            for c in contexts
        ]
        await asyncio.sleep(0.05)
        assert calls[2].done(), "the third report was refused at once, not queued"
        release.set()
        return [(await t, c) for t, c in zip(calls, contexts, strict=True)]

    (first, a), (second, b), (third, c) = asyncio.run(run())
    assert first is not None and second is not None and first.accepted == 1
    assert (a.code, b.code) == (None, None)
    assert third is None and c.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "ReportAccess calls are in progress" in c.details
    # the places are given back: a later report is handled
    later = asyncio.run(service.ReportAccess(pb.AccessBatch(events=[event()]), Context()))
    assert later is not None and later.accepted == 1


def test_events_beyond_the_rate_budget_are_dropped_unread_and_counted() -> None:
    now = [100.0]
    publisher = QueuePublisher(room=10_000)
    analytics = Analytics("n", publisher, max_events_per_second=200, ticker=lambda: now[0])
    batch = pb.AccessBatch(events=[event(time_ms=int(time.time() * 1000))] * 150)
    first = asyncio.run(analytics.report(batch))
    second = asyncio.run(analytics.report(batch))  # 50 tokens left of one second's 200
    assert (first.accepted, first.dropped) == (150, 0)
    assert (second.accepted, second.dropped) == (50, 100)
    now[0] += 0.5  # half a second refills 100
    third = asyncio.run(analytics.report(batch))
    assert (third.accepted, third.dropped) == (100, 50)
    now[0] += 60  # never more than one second's worth
    fourth = asyncio.run(analytics.report(pb.AccessBatch(events=list(batch.events) * 2)))
    assert (fourth.accepted, fourth.dropped) == (200, 100)
    assert analytics.stats().dropped["rate-limited"] == 250
    assert len(publisher.messages) == 500  # only what the budget let through was read

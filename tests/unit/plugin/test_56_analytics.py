"""kong_plugin.analytics: sampling, the bounded buffer, batches, drop reasons, and what an
event never carries."""

from __future__ import annotations

import hashlib
import json
import math
import random
import threading
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from strata.v1 import cache_pb2 as pb

from kong_plugin import analytics, outcome
from kong_plugin.access_event import access_event, key_hash
from kong_plugin.analytics import DROP_REASONS, Recorder, Target
from kong_plugin.client import SidecarRejectedError, SidecarUnavailableError
from kong_plugin.config import PluginConfig, parse_config
from kong_plugin.errors import ConfigError
from kong_plugin.outcome import Outcome

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[3] / "schema" / "strata.access.v1.schema.json").read_text()
)
SECRET = "sk_live_9f8e7d6c5b4a"


def config(rate: float, address: str = "unix:/run/strata/sidecar.sock", **raw: Any) -> PluginConfig:
    return parse_config(
        {"analytics": {"sample_rate": rate}, "sidecar": {"address": address}, **raw}
    )


def make(cfg: PluginConfig | None, **fields: Any) -> Outcome:
    values: dict[str, Any] = {
        "phase": "access",
        "result": "Hit",
        "detail": "",
        "method": "GET",
        "route_id": "route-1",
        "consumer_id": "",
        "status": 200,
        "tier": "memory",
        "body_bytes": 12,
        "key": "v2:route-1:/products/42",
        "started": time.time(),
        "elapsed_s": 0.0012,
        "config": cfg,
    }
    values.update(fields)
    return Outcome(**values)


class FakeSender:
    """Records batches; answers with `ack` or raises `error`."""

    def __init__(self) -> None:
        self.batches: list[tuple[Target, pb.AccessBatch]] = []
        self.error: Exception | None = None
        self.ack: pb.AccessAck | None = None

    def __call__(self, target: Target, batch: pb.AccessBatch, timeout_s: float) -> pb.AccessAck:
        self.batches.append((target, batch))
        if self.error is not None:
            raise self.error
        return self.ack or pb.AccessAck(accepted=len(batch.events))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def recorder(sender: FakeSender, clock: Clock | None = None, **kw: Any) -> Recorder:
    return Recorder(sender, rng=random.Random(1), clock=clock or Clock(), **kw)


def balanced(r: Recorder) -> bool:
    s = r.stats()
    return s.sampled == s.sent + sum(s.dropped.values()) + s.buffered


# -- sampling -------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.01, 0.1, 0.5, 0.9])
def test_the_sampled_share_is_the_rate_within_four_standard_deviations(rate: float) -> None:
    r = Recorder(FakeSender(), rng=random.Random(14), max_buffered=100_000)
    n = 20_000
    cfg = config(rate)
    for _ in range(n):
        r.offer(make(cfg))
    sigma = math.sqrt(n * rate * (1 - rate))
    assert abs(r.stats().sampled - n * rate) <= 4 * sigma
    r.stop()


def test_rate_zero_samples_nothing_and_draws_no_number_rate_one_samples_all() -> None:
    class NoDraws(random.Random):
        def random(self) -> float:
            raise AssertionError("drew a number")

    r = Recorder(FakeSender(), rng=NoDraws())
    for _ in range(100):
        r.offer(make(config(0.0)))
        r.offer(make(config(1.0)))
        r.offer(make(None))  # a rejected config: no settings, nothing sampled
    assert r.stats().sampled == 100
    r.stop()


def test_the_sample_rate_is_checked_and_the_error_names_the_field() -> None:
    assert parse_config({}).analytics.sample_rate == 0.0
    for bad in (float("nan"), float("inf"), -0.1, 1.5, "half", True):
        with pytest.raises(ConfigError) as err:
            parse_config({"analytics": {"sample_rate": bad}})
        assert str(err.value).startswith("analytics.sample_rate:")


def test_the_service_id_comes_from_kongs_config_keys_when_the_plugin_is_on_a_service() -> None:
    assert config(1.0, service_id="svc-9").analytics.service_id == "svc-9"
    assert config(1.0).analytics.service_id == ""
    assert config(1.0, service_id={"id": "x"}).analytics.service_id == ""


# -- buffer, batches ------------------------------------------------------------------


def test_a_full_buffer_drops_new_events_and_counts_them() -> None:
    sender = FakeSender()
    r = recorder(sender, max_buffered=10, batch_events=1000)
    cfg = config(1.0)
    for _ in range(25):
        r.offer(make(cfg))
    s = r.stats()
    assert (s.sampled, s.buffered, s.dropped["buffer-full"]) == (25, 10, 15)
    assert balanced(r)
    r.stop()
    r.flush()
    assert r.stats().sent == 10 and r.stats().buffered == 0 and balanced(r)


def test_events_go_in_batches_of_at_most_batch_events_per_sidecar() -> None:
    sender = FakeSender()
    r = recorder(sender, batch_events=4)
    a, b = config(1.0, "unix:/run/a.sock"), config(1.0, "unix:/run/b.sock")
    for i in range(10):
        r.offer(make(a, key=f"a{i}"))
    for i in range(3):
        r.offer(make(b, key=f"b{i}"))
    r.stop()
    r.flush()
    sizes = [(t.address, len(batch.events)) for t, batch in sender.batches]
    assert sizes == [("unix:/run/a.sock", 4), ("unix:/run/a.sock", 4), ("unix:/run/a.sock", 2),
                     ("unix:/run/b.sock", 3)]  # fmt: skip
    assert r.stats().sent == 13 and balanced(r)


def test_the_thread_sends_within_the_flush_interval_without_being_asked() -> None:
    sender = FakeSender()
    r = Recorder(sender, flush_interval_s=0.01)
    try:
        r.offer(make(config(1.0)))
        deadline = time.monotonic() + 5
        while r.stats().sent < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert r.stats().sent == 1
        assert any(t.name == "strata-analytics" for t in threading.enumerate())
    finally:
        r.stop()


def test_offering_is_cheap_and_does_no_io() -> None:
    class Blocking(FakeSender):
        def __call__(self, target: Target, batch: pb.AccessBatch, timeout_s: float) -> Any:
            raise AssertionError("offer() must not send")

    r = Recorder(Blocking(), max_buffered=100_000, batch_events=100_000, flush_interval_s=60)
    cfg = config(1.0)
    items = [make(cfg) for _ in range(20_000)]
    started = time.perf_counter()
    for item in items:
        r.offer(item)
    per_offer = (time.perf_counter() - started) / len(items)
    r.stop(0.1)
    assert r.stats().buffered == 20_000
    assert per_offer < 0.001  # generous: microseconds in practice, never a call's worth


# -- drop reasons ---------------------------------------------------------------------


def test_an_unreachable_sidecar_drops_the_batch_and_backs_off() -> None:
    sender, clock = FakeSender(), Clock()
    r = recorder(sender, clock)
    r.stop()
    cfg = config(1.0)
    sender.error = SidecarUnavailableError("down")
    r.offer(make(cfg))
    r.flush()
    r.offer(make(cfg))
    r.flush()  # inside the back-off: not even tried
    assert len(sender.batches) == 1
    assert r.stats().dropped["sidecar-unavailable"] == 2
    sender.error = None
    clock.now += 1.5
    r.offer(make(cfg))
    r.flush()
    assert len(sender.batches) == 2 and r.stats().sent == 1 and balanced(r)


def test_a_sidecar_with_analytics_off_is_left_alone_for_the_time_it_asks() -> None:
    sender, clock = FakeSender(), Clock()
    r = recorder(sender, clock)
    r.stop()
    cfg = config(1.0)
    sender.ack = pb.AccessAck(disabled=True, retry_after_ms=30_000)
    for _ in range(3):
        r.offer(make(cfg))
        r.flush()
    assert len(sender.batches) == 1 and r.stats().dropped["disabled"] == 3
    clock.now += 31
    sender.ack = None
    r.offer(make(cfg))
    r.flush()
    assert r.stats().sent == 1 and balanced(r)


def test_an_older_sidecar_without_the_call_counts_as_disabled() -> None:
    sender = FakeSender()
    r = recorder(sender)
    r.stop()
    sender.error = SidecarRejectedError(12, "Method not found!")
    r.offer(make(config(1.0)))
    r.flush()
    assert r.stats().dropped["disabled"] == 1


def test_refusals_and_a_full_sidecar_queue_are_counted_apart() -> None:
    sender = FakeSender()
    r = recorder(sender)
    r.stop()
    cfg = config(1.0)
    sender.ack = pb.AccessAck(accepted=5, rejected=2, dropped=3)
    for _ in range(10):
        r.offer(make(cfg))
    r.flush()
    s = r.stats()
    assert (s.sent, s.dropped["rejected"], s.dropped["sidecar-queue-full"]) == (5, 2, 3)
    sender.ack, sender.error = None, SidecarRejectedError(3, "events: too many")
    r.offer(make(cfg))
    r.flush()
    assert r.stats().dropped["rejected"] == 3 and balanced(r)
    assert set(r.stats().dropped) == set(DROP_REASONS)


# -- what an event holds ----------------------------------------------------------------


def test_an_event_never_carries_the_key_a_header_value_or_a_body() -> None:
    key = f"v2:route-1:GET:/me?api_key={SECRET}:consumer=alice"
    sender = FakeSender()
    r = recorder(sender)
    r.stop()
    r.offer(make(config(1.0), key=key, consumer_id="alice-id", detail="stored"))
    r.flush()
    ((_, batch),) = sender.batches
    wire = batch.SerializeToString()
    assert SECRET.encode() not in wire and b"/me" not in wire and b"api_key" not in wire
    (event,) = batch.events
    assert event.key_hash == hashlib.sha256(key.encode()).hexdigest()[:16]
    assert key_hash("") == "" and access_event(make(None, key="")).key_hash == ""


def test_the_event_fields_follow_the_outcome() -> None:
    started = 1_765_000_000.1234
    o = make(
        config(1.0),
        result="Bypass",
        detail="cookie",
        status=0,
        tier="",
        body_bytes=-1,
        started=started,
        elapsed_s=0.0025,
        phase="access",
        method="POST",
    )
    e = access_event(o, "svc-1")
    assert (e.time_ms, e.cache_result, e.cache_detail, e.status) == (
        1_765_000_000_123,
        "bypass",
        "cookie",
        0,
    )
    assert (e.tier, e.bytes, e.service_id, e.method) == ("", -1, "svc-1", "POST")
    assert e.latency_ms == pytest.approx(2.5)


def test_the_sidecars_json_of_a_plugin_event_is_valid_against_the_schema() -> None:
    from sidecar.analytics.event import check, encode  # noqa: PLC0415

    checker = jsonschema.FormatChecker()
    now_ms = int(time.time() * 1000)
    for o in (
        make(config(1.0)),
        make(
            config(1.0),
            result="",
            detail="no-response-phase",
            phase="log",
            status=0,
            tier="",
            body_bytes=-1,
            key="",
            consumer_id="",
        ),
        make(config(1.0), result="Miss", detail="stored", phase="response", consumer_id="c-1"),
    ):
        event = access_event(o, "svc-1")
        assert check(event, now_ms) is None
        _, value = encode(event, "node-1")
        doc = json.loads(value)
        jsonschema.validate(doc, SCHEMA, format_checker=checker)
        assert doc["time"].endswith("Z") and len(doc["time"]) == 24


# -- installation ---------------------------------------------------------------------


def test_install_subscribes_once_per_process() -> None:
    offer = analytics.recorder().offer
    was_installed = offer in outcome.subscribers()
    try:
        analytics.install()
        analytics.install()
        assert sum(s == offer for s in outcome.subscribers()) == 1
        assert set(analytics.stats().dropped) == set(DROP_REASONS)
    finally:
        undo = analytics._unsubscribe
        if not was_installed and undo is not None:
            undo()
            analytics._unsubscribe = None

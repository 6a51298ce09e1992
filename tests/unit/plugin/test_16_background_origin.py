"""The store queue, origin health and the hit-for-miss memory: what the handler relies on
when the sidecar falls behind and when the origin fails."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

from strata.v1 import cache_pb2 as pb

from kong_plugin import carry, handler, runtime
from kong_plugin.background import Background, Submitted
from kong_plugin.client import SidecarUnavailableError
from kong_plugin.inflight import RequestState
from kong_plugin.origin import OriginHealth
from kong_plugin.recent import RecentKeys
from kong_plugin.report import Reporter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _blocked(bg: Background, workers: int) -> threading.Event:
    """Occupy every worker until the returned event is set."""
    gate = threading.Event()
    for _ in range(workers):
        bg.submit(gate.wait)
    return gate


def test_a_full_queue_refuses_and_counts() -> None:
    bg = Background(workers=1, max_jobs=2)
    gate = _blocked(bg, 1)
    ran: list[str] = []
    try:
        assert bg.join(0.05) is False  # the blocked worker is still running
        assert bg.submit(lambda: ran.append("a")) is Submitted.QUEUED
        assert bg.submit(lambda: ran.append("b")) is Submitted.QUEUED
        assert bg.submit(lambda: ran.append("c")) is Submitted.FULL
        assert bg.stats().depth == 2 and bg.stats().dropped == 1
    finally:
        gate.set()
    assert bg.join(5)
    assert ran == ["a", "b"]
    assert bg.submit(lambda: ran.append("d")) is Submitted.QUEUED
    assert bg.join(5) and ran[-1] == "d"


def test_a_failing_job_is_counted_and_the_worker_goes_on() -> None:
    bg = Background(workers=1)

    def boom() -> None:
        raise RuntimeError("sidecar gone")

    bg.submit(boom)
    done = threading.Event()
    bg.submit(done.set)
    assert done.wait(5) and bg.join(5)
    assert bg.stats().failed == 1


def test_one_failing_key_is_down_alone_and_the_origin_stays_up() -> None:
    clock = Clock()
    health = OriginHealth(base_backoff_s=1.0, clock=clock)
    assert health.failed("r", "bad") is False
    assert health.failed("r", "bad") is False  # the same key again: still one key
    assert not health.admit("r", "bad")
    assert health.admit("r", "good") and health.admit("r", "other")
    clock.now += 1.0
    assert health.admit("r", "bad")  # its probe
    assert not health.admit("r", "bad")
    assert health.succeeded("r", "bad") is False  # the origin never was down
    assert health.admit("r", "bad")


def test_failures_of_distinct_keys_take_the_origin_down_with_a_probe_per_back_off() -> None:
    clock = Clock()
    health = OriginHealth(base_backoff_s=1.0, max_backoff_s=4.0, distinct_keys=3, clock=clock)
    assert health.failed("r", "a") is False
    assert health.failed("r", "b") is False
    assert health.failed("r", "c") is True
    assert health.failed("r", "d") is False  # already down: not reported again
    assert not health.admit("r", "never-failed")
    clock.now += 1.0
    assert health.admit("r", "x")  # the origin's probe
    assert not health.admit("r", "y")  # nobody else meanwhile
    health.failed("r", "x")  # the probe failed: back-off doubles
    clock.now += 1.5
    assert not health.admit("r", "y")
    clock.now += 0.5
    assert health.admit("r", "y")
    health.failed("r", "y")
    still_down = []
    for _ in range(3):
        clock.now += 10
        assert health.admit("r", "z")
        health.failed("r", "z")
        clock.now += 3.9
        still_down.append(health.admit("r", "z2"))
    assert still_down == [False, False, False]  # capped at 4 s, not beyond
    assert health.succeeded("r", "z") is True
    assert health.admit("r", "fresh") and health.admit("r", "fresh")
    assert health.succeeded("r", "fresh") is False


def test_keys_that_failed_during_an_outage_come_back_with_their_origin() -> None:
    clock = Clock()
    health = OriginHealth(distinct_keys=2, clock=clock)
    health.failed("r", "a")
    health.failed("r", "b")  # down
    clock.now += 1.0
    health.failed("other", "c")  # another route's key: not affected
    assert health.admit("r", "probe")
    assert health.succeeded("r", "probe") is True
    assert health.admit("r", "a") and health.admit("r", "b")
    assert not health.admit("other", "c")


def test_a_success_between_failures_keeps_the_origin_up() -> None:
    clock = Clock()
    health = OriginHealth(distinct_keys=3, clock=clock)
    health.failed("r", "a")
    health.failed("r", "b")
    health.succeeded("r", "ok")
    assert health.failed("r", "c") is False
    assert health.admit("r", "ok")


def test_a_probe_that_never_answers_does_not_keep_the_origin_down_forever() -> None:
    clock = Clock()
    health = OriginHealth(base_backoff_s=1.0, distinct_keys=1, clock=clock)
    health.failed("r", "k")
    clock.now += 1.0
    assert health.admit("r", "k")  # probe lost (its request state vanished)
    clock.now += 1.0
    assert health.admit("r", "k")  # another probe is due


def test_recent_keys_expire_and_stay_bounded() -> None:
    clock = Clock()
    keys = RecentKeys(ttl_s=30, max_keys=3, clock=clock)
    keys.add("a")
    assert "a" in keys
    clock.now += 31
    assert "a" not in keys and len(keys) == 0
    for k in "bcde":
        keys.add(k)
    assert "b" not in keys and all(k in keys for k in "cde")
    keys.discard("c")
    assert "c" not in keys


# -- the handler's response phase with a full store queue ------------------------------------


class FakeKong:
    """The PDK calls the ``response`` and ``log`` phases make, answering as Kong does."""

    def __init__(self, token: str, status: int, headers: dict[str, Any], body: bytes) -> None:
        self.set_headers: dict[str, str] = {}
        self.logged: list[str] = []
        self.ctx = SimpleNamespace(shared=SimpleNamespace(get=lambda k: token))
        self.response = SimpleNamespace(
            get_status=lambda: status,
            set_headers=self.set_headers.update,
            get_headers=lambda n: headers,
        )
        self.nginx = SimpleNamespace(get_ctx=lambda k: headers if k == "buffered_headers" else None)
        self.service = SimpleNamespace(response=SimpleNamespace(get_raw_body=lambda: body))
        self.router = SimpleNamespace(  # the names of the entry's event tags
            get_route=lambda: {"id": "r", "name": "r"},
            get_service=lambda: {"name": "s", "read_timeout": 60_000},
        )
        self.log = SimpleNamespace(warn=self.logged.append, err=self.logged.append)


def test_a_store_the_sidecar_could_not_take_is_reported_truthfully(monkeypatch: Any) -> None:
    monkeypatch.setattr(runtime, "reporter", Reporter(interval_s=0))

    class Down:
        timeout_s = 0.05
        address = "unix:/nonexistent.sock"

        def store(self, *_: Any, **__: Any) -> pb.StoreResponse:
            raise SidecarUnavailableError("sidecar socket /x: No such file or directory")

        def release(self, *_: Any, **__: Any) -> pb.ReleaseResponse:
            return pb.ReleaseResponse()

    monkeypatch.setattr(runtime, "client_for", lambda *a, **k: Down())
    plugin = handler.Plugin({"sidecar": {"address": "unix:/nonexistent.sock"}})
    state = RequestState("store", "GET", "h", "/p", key="v1:r:k", request_time=0.0)
    kong = FakeKong(
        carry.pack(state),
        200,
        {"Cache-Control": "max-age=60", "Content-Type": "text/plain"},
        b"hello",
    )
    plugin.response(kong)
    assert kong.set_headers["X-Cache-Status"] == "Miss"  # cacheable: not a bypass
    cache_status = kong.set_headers.get("Cache-Status", "")
    assert "stored" not in cache_status.replace("detail=", "")
    assert "detail=store-failed" in cache_status
    assert any("sidecar store failed" in line for line in kong.logged)


def test_a_store_lands_before_the_response_goes_out(monkeypatch: Any) -> None:
    stored: list[bytes] = []

    class Up:
        timeout_s = 0.05
        address = "unix:/nonexistent.sock"

        def store(self, key: bytes, *_: Any, **__: Any) -> pb.StoreResponse:
            stored.append(key)
            return pb.StoreResponse(result=pb.STORE_RESULT_STORED)

    monkeypatch.setattr(runtime, "client_for", lambda *a, **k: Up())
    plugin = handler.Plugin({"sidecar": {"address": "unix:/nonexistent.sock"}})
    state = RequestState("store", "GET", "h", "/p", key="v1:r:k", request_time=0.0)
    headers = {"Cache-Control": "max-age=60", "Content-Type": "text/plain"}
    kong = FakeKong(carry.pack(state), 200, headers, b"hello")
    plugin.response(kong)
    assert stored == [b"v1:r:k"]  # no queue: done when the phase returns
    assert kong.set_headers["Cache-Status"].endswith("; stored")


def test_log_phase_marks_an_unreachable_origin_down_and_releases_the_lease(
    monkeypatch: Any,
) -> None:
    health = OriginHealth(distinct_keys=3)
    monkeypatch.setattr(runtime, "origins", health)
    monkeypatch.setattr(runtime, "reporter", Reporter(interval_s=0))
    released: list[bytes] = []

    class Client:
        timeout_s = 0.05

        def release(self, key: bytes) -> pb.ReleaseResponse:
            released.append(key)
            return pb.ReleaseResponse()

    monkeypatch.setattr(runtime, "client_for", lambda address, timeout, uid=None: Client())
    plugin = handler.Plugin({"sidecar": {"address": "unix:/nonexistent.sock"}})
    state = RequestState("store", "GET", "h", "/p", key="v1:r:k", fill_lease=True, origin="r1")
    token = carry.pack(state)
    kong = FakeKong(token, 502, {}, b"")
    kong.nginx = SimpleNamespace(get_ctx=lambda k: True if k == "KONG_PROXIED" else None)
    plugin.log(kong)
    assert runtime.background.join(5)
    assert released == [b"v1:r:k"]
    assert health.is_down("r1", "v1:r:k") and not health.is_down("r1")  # one key so far

    # a request another plugin ended in access was never proxied: not an origin failure
    state = RequestState("store", "GET", "h", "/p", key="v1:r:k2", origin="r2")
    kong = FakeKong(carry.pack(state), 200, {}, b"")
    plugin.log(kong)
    assert not health.is_down("r2", "v1:r:k2")


def test_only_a_key_whose_own_request_got_no_answer_is_unreachable() -> None:
    clock = Clock()
    health = OriginHealth(base_backoff_s=1.0, distinct_keys=2, clock=clock)
    health.failed("r", "a")  # answered 503
    assert not health.unreachable("a")
    health.failed("r", "b", unreachable=True)  # the origin is down now
    assert health.is_down("r")
    assert health.unreachable("b")
    # other URLs failing (timing out, or down with the origin) say nothing of this one
    assert not health.unreachable("c")
    health.failed("r", "b")  # an answer again: reachable
    assert not health.unreachable("b")
    health.failed("r", "b", unreachable=True)
    health.succeeded("r", "b")
    assert not health.unreachable("b")


def test_the_log_phase_of_a_request_answered_here_makes_one_pdk_call() -> None:
    plugin = handler.Plugin({"sidecar": {"address": "unix:/nonexistent.sock"}})
    state = RequestState("store", "GET", "h", "/p", key="v1:r:k", fill_lease=True, nonce=77)
    runtime.answered.add("77")  # its response phase ran in this worker
    calls: list[str] = []

    def get_ctx(name: str) -> None:
        calls.append(name)

    kong = FakeKong(carry.pack(state), 200, {}, b"")
    kong.nginx = SimpleNamespace(get_ctx=get_ctx)
    plugin.log(kong)
    assert calls == []  # neither buffered_status nor KONG_PROXIED was asked for
    assert "77" not in runtime.answered

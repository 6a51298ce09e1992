"""The handler publishes exactly one `Outcome` per request it saw, where the answer became
final, with the fields filled from what it knows there (`kong_plugin.handler`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from strata.v1 import cache_pb2 as pb

from kong_plugin import carry, handler, handover, outcome, runtime, wire
from kong_plugin.client import SidecarUnavailableError
from kong_plugin.freshness import EntryTiming
from kong_plugin.headers import Headers
from kong_plugin.inflight import RequestState
from kong_plugin.near_cache import NearCache
from kong_plugin.outcome import Outcome
from kong_plugin.report import Reporter
from kong_plugin.stored import StoredEntry

NOW = 1_700_000_000.0


def entry(ttl: int = 600, body: bytes = b"hello") -> StoredEntry:
    return StoredEntry(
        200,
        Headers({"content-type": ("text/plain",), "cache-control": (f"max-age={ttl}",)}),
        body,
        EntryTiming(time.time(), ttl, 0, 0, ttl),
    )


class Kong:
    """The PDK of one request's phases: a GET ``/p/1`` (or `method`), its ``ctx.shared``,
    and for ``response`` the upstream's `status`, `headers` and `body`."""

    def __init__(
        self,
        method: str = "GET",
        extra: dict[str, str] | None = None,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        shared: dict[str, Any] | None = None,
        ctx: dict[str, Any] | None = None,
    ) -> None:
        self.exits: list[tuple[Any, ...]] = []
        self.shared = shared if shared is not None else {}
        self.set: dict[str, str] = {}
        request = {"host": "shop.example", "accept": "*/*", **(extra or {})}
        upstream = headers or {}
        nginx_ctx = {"buffered_headers": upstream, **(ctx or {})}

        def const(value: Any) -> Callable[..., Any]:
            return lambda *_: value

        self.nginx = SimpleNamespace(
            get_var=const(f"{method} /p/1 HTTP/1.1"), get_ctx=nginx_ctx.get
        )
        self.request = SimpleNamespace(get_headers=const(request))
        self.client = SimpleNamespace(get_consumer=const(None))
        self.router = SimpleNamespace(
            get_service=const({"read_timeout": 60000, "name": "s"}),
            get_route=const({"id": "r1", "name": "r"}),
        )
        self.response = SimpleNamespace(
            exit=lambda *a: self.exits.append(a),
            set_headers=self.set.update,
            set_header=self.set.__setitem__,
            get_status=const(status),
            get_headers=const(upstream),
            clear_header=const(None),
        )
        self.service = SimpleNamespace(
            request=SimpleNamespace(clear_header=const(None), set_headers=const(None)),
            response=SimpleNamespace(get_raw_body=const(body)),
        )
        self.ctx = SimpleNamespace(
            shared=SimpleNamespace(set=self.shared.__setitem__, get=self.shared.get)
        )
        self.log = SimpleNamespace(warn=const(None), err=const(None))


class Sidecar:
    """Answers lookups with `answer` (or raises), takes stores with `stored`."""

    timeout_s = 0.05
    address = "unix:/nonexistent.sock"

    def __init__(
        self,
        answer: pb.LookupResponse | None = None,
        stored: int = pb.STORE_RESULT_STORED,
        down: bool = False,
    ) -> None:
        self.answer = answer or pb.LookupResponse(outcome=pb.OUTCOME_MISS)
        self.stored = stored
        self.down = down

    def lookup(self, *_: Any, **__: Any) -> pb.LookupResponse:
        if self.down:
            raise SidecarUnavailableError("down")
        return self.answer

    def store(self, *_: Any, **__: Any) -> pb.StoreResponse:
        if self.down:
            raise SidecarUnavailableError("down")
        return pb.StoreResponse(result=self.stored)  # type: ignore[arg-type]

    def release(self, *_: Any, **__: Any) -> pb.ReleaseResponse:
        return pb.ReleaseResponse()

    def invalidate(self, **_: Any) -> pb.InvalidateResponse:
        return pb.InvalidateResponse()


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Outcome]]:
    monkeypatch.setattr(runtime, "reporter", Reporter(interval_s=0))
    seen: list[Outcome] = []
    undo = outcome.subscribe(seen.append)
    yield seen
    undo()


def _plugin(sidecar: Sidecar, monkeypatch: pytest.MonkeyPatch, **fields: Any) -> handler.Plugin:
    monkeypatch.setattr(runtime, "client_for", lambda *a, **k: sidecar)
    config = {"route_id": "r1", "sidecar": {"address": "unix:/nonexistent.sock"}, **fields}
    return handler.Plugin(config, clock=lambda: NOW)


def _hit(tier: str = "redis") -> pb.LookupResponse:
    return pb.LookupResponse(
        outcome=pb.OUTCOME_HIT, entry=wire.entry_to_pb(entry()), age_ms=0, tier=tier
    )


def test_a_hit_from_the_sidecar_is_published_in_access_with_its_tier(
    monkeypatch: pytest.MonkeyPatch, published: list[Outcome]
) -> None:
    plugin = _plugin(Sidecar(_hit("redis")), monkeypatch)
    kong = Kong()
    plugin.access(kong)
    (o,) = published
    assert (o.phase, o.result, o.status, o.tier, o.body_bytes) == ("access", "Hit", 200, "redis", 5)
    assert (o.method, o.route_id, o.consumer_id, o.detail) == ("GET", "r1", "", "")
    assert o.key.startswith("v2:") and o.started == NOW and o.elapsed_s == 0.0
    assert o.config is plugin.config and o.store == ""


def test_a_near_cache_hit_says_near(
    monkeypatch: pytest.MonkeyPatch, published: list[Outcome]
) -> None:
    near = NearCache(max_bytes=1 << 20, max_entry_bytes=1 << 16, max_age_s=30.0)
    near.set_connected(True)
    monkeypatch.setattr(runtime, "near_for", lambda client: near)
    plugin = _plugin(Sidecar(_hit("memory")), monkeypatch)
    for _ in range(3):  # admitted once asked for twice; the third is the near-cache's
        plugin.access(Kong())
    assert [o.tier for o in published] == ["memory", "memory", "near"]
    assert all(o.result == "Hit" for o in published)


@pytest.mark.parametrize(
    ("extra", "sidecar", "detail"),
    [
        ({"cookie": "a=1"}, Sidecar(), "cookie"),
        ({}, Sidecar(down=True), "sidecar-unavailable"),
        ({"if-match": '"v1"'}, Sidecar(), "precondition"),
    ],
)
def test_a_bypass_decided_in_access_is_published_there_with_its_reason(
    monkeypatch: pytest.MonkeyPatch,
    published: list[Outcome],
    extra: dict[str, str],
    sidecar: Sidecar,
    detail: str,
) -> None:
    plugin = _plugin(sidecar, monkeypatch, cookie_requests="bypass")
    kong = Kong(extra=extra)
    plugin.access(kong)
    (o,) = published
    assert (o.phase, o.result, o.status, o.detail) == ("access", "Bypass", 0, detail)
    assert kong.shared == {}  # nothing left for a later phase to publish


def test_a_rejected_configuration_is_a_bypass_for_config(
    monkeypatch: pytest.MonkeyPatch, published: list[Outcome]
) -> None:
    plugin = _plugin(Sidecar(), monkeypatch, cache_ttl=-5)
    assert plugin.config is None
    plugin.access(Kong())
    (o,) = published
    assert (o.result, o.detail, o.config) == ("Bypass", "config", None)


def test_only_if_cached_without_an_entry_is_a_published_504_miss(
    monkeypatch: pytest.MonkeyPatch, published: list[Outcome]
) -> None:
    plugin = _plugin(Sidecar(), monkeypatch, cache_control=True)
    plugin.access(Kong(extra={"cache-control": "only-if-cached"}))
    (o,) = published
    assert (o.result, o.detail, o.status) == ("Miss", "only-if-cached", 504)


def test_a_failing_access_phase_publishes_an_error_once(
    monkeypatch: pytest.MonkeyPatch, published: list[Outcome]
) -> None:
    plugin = _plugin(Sidecar(), monkeypatch)
    kong = Kong()
    kong.request = SimpleNamespace(get_headers=lambda: 1 / 0)
    plugin.access(kong)
    (o,) = published
    assert (o.phase, o.result, o.detail, o.method) == ("access", "", "error", "GET")


def _miss_then_response(
    monkeypatch: pytest.MonkeyPatch, sidecar: Sidecar, headers: dict[str, str], body: bytes
) -> tuple[handler.Plugin, Kong]:
    plugin = _plugin(sidecar, monkeypatch)
    kong = Kong()
    plugin.access(kong)
    assert kong.shared, "the miss went upstream"
    answer = Kong(status=200, headers=headers, body=body, shared=kong.shared)
    plugin.response(answer)
    return plugin, answer


@pytest.mark.parametrize(
    ("stored", "store", "detail"),
    [
        (pb.STORE_RESULT_STORED, "stored", "stored"),
        (pb.STORE_RESULT_NOT_ADMITTED, "store-not-admitted", "store-not-admitted"),
        (pb.STORE_RESULT_TOO_LARGE, "too-large", "store-too-large"),
        (pb.STORE_RESULT_EXPIRED, "expired", "store-expired"),
    ],
)
def test_a_proxied_miss_is_published_once_in_response_with_its_store_outcome(
    monkeypatch: pytest.MonkeyPatch,
    published: list[Outcome],
    stored: int,
    store: str,
    detail: str,
) -> None:
    headers = {"Cache-Control": "max-age=60", "Content-Type": "text/plain"}
    plugin, _ = _miss_then_response(monkeypatch, Sidecar(stored=stored), headers, b"hello!")
    (o,) = published
    assert (o.phase, o.result, o.status, o.store, o.detail) == (
        "response",
        "Miss",
        200,
        store,
        detail,
    )
    assert (o.body_bytes, o.method, o.route_id, o.tier) == (6, "GET", "r1", "")
    assert o.key and o.config is plugin.config


def test_a_store_the_sidecar_could_not_take_is_store_failed(
    monkeypatch: pytest.MonkeyPatch, published: list[Outcome]
) -> None:
    plugin = _plugin(Sidecar(), monkeypatch)
    kong = Kong()
    plugin.access(kong)
    monkeypatch.setattr(runtime, "client_for", lambda *a, **k: Sidecar(down=True))
    headers = {"Cache-Control": "max-age=60", "Content-Type": "text/plain"}
    plugin.response(Kong(status=200, headers=headers, body=b"x", shared=kong.shared))
    (o,) = published
    assert (o.result, o.store, o.detail) == ("Miss", "store-failed", "store-failed")


def test_a_response_that_may_not_be_stored_is_a_published_bypass_not_storable(
    monkeypatch: pytest.MonkeyPatch, published: list[Outcome]
) -> None:
    headers = {"Cache-Control": "private", "Content-Type": "text/plain"}
    _miss_then_response(monkeypatch, Sidecar(), headers, b"secret")
    (o,) = published
    assert (o.phase, o.result, o.store, o.body_bytes) == ("response", "Bypass", "not-storable", -1)
    assert o.detail  # the reason, as the Cache-Status detail says


def test_a_write_is_published_in_response_with_the_upstreams_status(
    monkeypatch: pytest.MonkeyPatch, published: list[Outcome]
) -> None:
    plugin = _plugin(Sidecar(), monkeypatch)
    kong = Kong("POST")
    plugin.access(kong)
    assert published == []
    plugin.response(Kong("POST", status=201, shared=kong.shared))
    (o,) = published
    assert (o.phase, o.result, o.detail, o.status, o.method, o.started) == (
        "response",
        "Bypass",
        "method",
        201,
        "POST",
        NOW,
    )


def test_a_request_whose_upstream_was_unreachable_is_published_in_log(
    monkeypatch: pytest.MonkeyPatch, published: list[Outcome]
) -> None:
    plugin = _plugin(Sidecar(), monkeypatch)
    kong = Kong()
    plugin.access(kong)
    plugin.log(Kong(shared=kong.shared, ctx={"KONG_PROXIED": True}))
    (o,) = published
    assert (o.phase, o.result, o.detail, o.status, o.route_id) == (
        "log",
        "",
        "upstream-unreachable",
        0,
        "r1",
    )


def test_a_request_answered_in_response_is_not_published_again_in_log(
    monkeypatch: pytest.MonkeyPatch, published: list[Outcome]
) -> None:
    headers = {"Cache-Control": "max-age=60", "Content-Type": "text/plain"}
    plugin, answer = _miss_then_response(monkeypatch, Sidecar(), headers, b"hello")
    plugin.log(answer)  # same worker: known answered
    other = RequestState("store", "GET", "h", "/p", key="v1:r:k", nonce=99)
    plugin.log(Kong(shared={handover.CTX_KEY: carry.pack(other)}, ctx={"buffered_status": 200}))
    assert [o.phase for o in published] == ["response"]  # the other worker published it


def test_publishing_adds_no_pdk_call_a_hit_still_costs_three(
    monkeypatch: pytest.MonkeyPatch, published: list[Outcome]
) -> None:
    calls: list[str] = []
    plugin = _plugin(Sidecar(_hit()), monkeypatch)
    kong = Kong()
    for ns in ("nginx", "request", "client", "router", "response", "ctx", "service"):
        space = getattr(kong, ns)
        for name, fn in list(vars(space).items()):
            if callable(fn):
                setattr(space, name, _tap(calls, f"{ns}.{name}", fn))
    plugin.access(kong)
    assert len(published) == 1
    # the request line, the headers, the consumer, the exit (the handler's documented 3
    # round trips: the exit is answered by Kong with nothing to wait for)
    assert calls == [
        "nginx.get_var",
        "request.get_headers",
        "client.get_consumer",
        "response.exit",
    ]


def _tap(calls: list[str], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def tapped(*a: Any) -> Any:
        calls.append(name)
        return fn(*a)

    return tapped


def test_a_consumers_miss_carries_its_consumer_id_to_the_response_outcome(
    monkeypatch: pytest.MonkeyPatch, published: list[Outcome]
) -> None:
    plugin = _plugin(Sidecar(), monkeypatch)
    kong = Kong()
    kong.client = SimpleNamespace(get_consumer=lambda *_: {"id": "c-42", "username": "alice"})
    plugin.access(kong)
    assert kong.shared, "the miss went upstream"
    headers = {"Cache-Control": "max-age=60", "Content-Type": "text/plain"}
    plugin.response(Kong(status=200, headers=headers, body=b"hello!", shared=kong.shared))
    (o,) = published
    assert (o.phase, o.result, o.consumer_id) == ("response", "Miss", "c-42")

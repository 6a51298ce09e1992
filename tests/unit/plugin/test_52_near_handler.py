"""The handler and the near-cache: a hot fresh entry is answered with no sidecar call; only
fresh HITs without a lease are offered to it; anything it cannot serve outright goes to the
sidecar; ``near_cache: false`` keeps a route out of it."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from strata.v1 import cache_pb2 as pb

from kong_plugin import handler, runtime, wire
from kong_plugin.freshness import EntryTiming
from kong_plugin.headers import Headers
from kong_plugin.near_cache import NearCache
from kong_plugin.report import Reporter
from kong_plugin.stored import StoredEntry


def entry(ttl: int = 600, body: bytes = b"hello") -> StoredEntry:
    return StoredEntry(
        200,
        Headers({"content-type": ("text/plain",), "cache-control": (f"max-age={ttl}",)}),
        body,
        EntryTiming(time.time(), ttl, 0, 0, ttl),
    )


class Kong:
    """The PDK calls of a GET's ``access`` phase; exits are recorded."""

    def __init__(self, extra: dict[str, str] | None = None) -> None:
        self.exits: list[tuple[int, Any, dict[str, Any]]] = []
        self.shared: dict[str, Any] = {}
        headers = {"host": "shop.example", "accept": "*/*", **(extra or {})}

        def const(value: Any) -> Callable[..., Any]:
            return lambda *_: value

        self.nginx = SimpleNamespace(get_var=const("GET /p/1 HTTP/1.1"), get_ctx=const(None))
        self.request = SimpleNamespace(get_headers=const(headers))
        self.client = SimpleNamespace(get_consumer=const(None))
        self.router = SimpleNamespace(get_service=const({"read_timeout": 60000}))
        self.response = SimpleNamespace(
            exit=lambda *a: self.exits.append(a), set_headers=const(None)
        )
        self.ctx = SimpleNamespace(shared=SimpleNamespace(set=self.shared.__setitem__))
        self.log = SimpleNamespace(warn=const(None), err=const(None))
        self.service = SimpleNamespace(request=SimpleNamespace(clear_header=const(None)))


class Sidecar:
    """Answers every lookup with `answer` and counts the lookups."""

    timeout_s = 0.05
    address = "unix:/nonexistent.sock"

    def __init__(self, answer: pb.LookupResponse) -> None:
        self.answer = answer
        self.lookups = 0

    def lookup(self, *_: Any, **__: Any) -> pb.LookupResponse:
        self.lookups += 1
        return self.answer

    def release(self, *_: Any, **__: Any) -> pb.ReleaseResponse:
        return pb.ReleaseResponse()


@pytest.fixture
def near(monkeypatch: pytest.MonkeyPatch) -> NearCache:
    cache = NearCache(max_bytes=1 << 20, max_entry_bytes=1 << 16, max_age_s=30.0)
    cache.set_connected(True)
    monkeypatch.setattr(runtime, "near_for", lambda client: cache)
    monkeypatch.setattr(runtime, "reporter", Reporter(interval_s=0))
    return cache


def _plugin(**fields: Any) -> handler.Plugin:
    return handler.Plugin(
        {"route_id": "r1", "sidecar": {"address": "unix:/nonexistent.sock"}, **fields}
    )


def _use(monkeypatch: pytest.MonkeyPatch, sidecar: Sidecar) -> None:
    monkeypatch.setattr(runtime, "client_for", lambda *a, **k: sidecar)


def test_a_hot_entry_is_answered_from_the_near_cache_without_a_sidecar_call(
    monkeypatch: pytest.MonkeyPatch, near: NearCache
) -> None:
    hit = pb.LookupResponse(outcome=pb.OUTCOME_HIT, entry=wire.entry_to_pb(entry()), age_ms=0)
    sidecar = Sidecar(hit)
    _use(monkeypatch, sidecar)
    plugin = _plugin()
    for _ in range(2):  # admitted once asked for twice
        kong = Kong()
        plugin.access(kong)
        assert kong.exits[0][0] == 200
    assert sidecar.lookups == 2 and near.stats().entries == 1
    for _ in range(5):
        kong = Kong()
        plugin.access(kong)
        status, body, headers = kong.exits[0]
        assert (status, body, headers["X-Cache-Status"]) == (200, b"hello", "Hit")
    assert sidecar.lookups == 2  # five hits, no gRPC call


def test_stale_answers_and_leases_are_never_offered(
    monkeypatch: pytest.MonkeyPatch, near: NearCache
) -> None:
    stale = pb.LookupResponse(
        outcome=pb.OUTCOME_STALE, entry=wire.entry_to_pb(entry(ttl=1)), age_ms=5000
    )
    sidecar = Sidecar(stale)
    _use(monkeypatch, sidecar)
    plugin = _plugin()
    for _ in range(3):
        plugin.access(Kong())
    assert near.stats().entries == 0 and sidecar.lookups == 3


def test_what_the_near_cache_cannot_serve_outright_goes_to_the_sidecar(
    monkeypatch: pytest.MonkeyPatch, near: NearCache
) -> None:
    hit = pb.LookupResponse(outcome=pb.OUTCOME_HIT, entry=wire.entry_to_pb(entry()), age_ms=0)
    sidecar = Sidecar(hit)
    _use(monkeypatch, sidecar)
    plugin = _plugin(cache_control=True)
    for _ in range(2):
        plugin.access(Kong())
    assert near.stats().entries == 1
    # the client wants a copy fresh for longer than the held one will be: the sidecar
    # decides (it may hand out the fill lease), not the near-cache
    plugin.access(Kong({"cache-control": "min-fresh=1000"}))
    assert sidecar.lookups == 3


def test_a_route_can_stay_out_of_the_near_cache(
    monkeypatch: pytest.MonkeyPatch, near: NearCache
) -> None:
    hit = pb.LookupResponse(outcome=pb.OUTCOME_HIT, entry=wire.entry_to_pb(entry()), age_ms=0)
    sidecar = Sidecar(hit)
    _use(monkeypatch, sidecar)
    plugin = _plugin(near_cache=False)
    for _ in range(4):
        plugin.access(Kong())
    assert sidecar.lookups == 4 and near.stats().entries == 0

"""Planning a background refresh (RFC 5861 §3): when the lease holder is answered stale at
once (`decide.Revalidate.in_background`), which of the client's headers the refresh
carries (`refresh.refresh_headers`), the refresh request itself (`refresh.plan`), and the
handler's access phase handing it to the pool (or revalidating in the request when no
refresh can be made), with the PDK calls it costs."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from strata.v1 import cache_pb2 as pb

from kong_plugin import decide, handler, refresh, runtime, wire
from kong_plugin.cache_status import XCacheStatus
from kong_plugin.cacheability import request_decision
from kong_plugin.config import PluginConfig
from kong_plugin.headers import Headers
from kong_plugin.inflight import RequestState
from kong_plugin.refresh_pool import Started
from kong_plugin.report import Reporter
from kong_plugin.stored import Found
from kong_plugin.upstream_target import Unusable
from tests.support.refresh_fakes import (
    ETAG,
    NOW,
    ROUTE,
    SERVICE,
    config,
    lease_holder,
    planned,
    stale_entry,
    stale_served,
    target,
)

LAST_MODIFIED = "Tue, 14 Nov 2023 22:13:20 GMT"
CFG = config(background_refresh={"forward_headers": ["X-Api-Key"]})
stored = stale_entry


def lookup(found: Found, cfg: PluginConfig = CFG, method: str = "GET") -> decide.AccessStep:
    h = Headers.of({})
    return decide.after_lookup(found, request_decision(method, h, cfg), "", h, cfg)


# -- decide: who is answered at once ------------------------------------------------------


def test_the_lease_holder_in_the_window_gets_the_stale_answer_to_give_at_once() -> None:
    step = lookup(Found(stored(), age_s=70, fill_lease=True))
    assert isinstance(step, decide.Revalidate)
    now = step.in_background
    assert now is not None and not now.release  # the refresh keeps the lease
    assert now.served.word is XCacheStatus.STALE
    assert now.served.member == "strata; hit; ttl=-10; detail=stale-while-revalidate"
    assert step.set_upstream == {"If-None-Match": ETAG}  # the foreground fallback


def test_with_background_refresh_off_the_lease_holder_revalidates_in_the_request() -> None:
    cfg = config(background_refresh={"enabled": False})
    step = lookup(Found(stored(), age_s=70, fill_lease=True), cfg)
    assert isinstance(step, decide.Revalidate) and step.in_background is None


@pytest.mark.parametrize(
    ("age", "lease"), [(70, False), (95, True), (10, True)], ids=["no-lease", "late", "fresh"]
)
def test_only_the_lease_holder_inside_the_window_refreshes_in_the_background(
    age: float, lease: bool
) -> None:
    step = lookup(Found(stored(), age_s=age, fill_lease=lease))
    assert not (isinstance(step, decide.Revalidate) and step.in_background is not None)


# -- which headers the refresh carries ---------------------------------------------------


def lines(**headers: str | list[str]) -> list[tuple[bytes, bytes]]:
    out = []
    for name, value in headers.items():
        for v in [value] if isinstance(value, str) else value:
            out.append((name.replace("_", "-").encode(), v.encode()))
    return out


def test_varied_keyed_and_forwarded_headers_only_in_request_order() -> None:
    cfg = config(vary_headers=["X-Tenant"], background_refresh={"forward_headers": ["X-Api-Key"]})
    request = lines(
        x_api_key="k",
        accept_language=["en", "fr"],
        x_tenant="t1",
        cookie="s=1",
        authorization="Bearer x",
        x_other="o",
        if_none_match='"client"',
    )
    sent = refresh.refresh_headers(request, stored(vary=("accept-language",)), cfg)
    assert sent == (
        ("x-api-key", "k"),
        ("accept-language", "en"),
        ("accept-language", "fr"),
        ("x-tenant", "t1"),
    )


def test_credentials_go_only_when_forward_headers_lists_them() -> None:
    cfg = config(background_refresh={"forward_headers": ["Cookie", "Authorization"]})
    sent = refresh.refresh_headers(lines(cookie="s=1", authorization="Bearer x"), stored(), cfg)
    assert sent == (("cookie", "s=1"), ("authorization", "Bearer x"))


@pytest.mark.parametrize(
    "name",
    [
        "x-forwarded-host",
        "x_forwarded_proto",
        "x-real-ip",
        "via",
        "host",
        "connection",
        "x-original-url",
    ],
)
def test_override_hop_by_hop_and_host_headers_are_never_forwarded(name: str) -> None:
    cfg = config(background_refresh={"forward_headers": [name]})
    assert refresh.refresh_headers([(name.encode(), b"v")], stored(), cfg) == ()


def test_an_entry_varying_on_a_header_the_refresh_may_not_send_is_unusable() -> None:
    varies_on_cookie = stored(vary=("cookie",))
    found = refresh.refresh_headers(lines(cookie="s=1"), varies_on_cookie, config())
    assert isinstance(found, Unusable) and "cookie" in found.reason
    # absent from the request: the refresh asks for the same variant (no cookie)
    assert refresh.refresh_headers(lines(x_other="o"), varies_on_cookie, config()) == ()


# -- the refresh request -------------------------------------------------------------------


def test_a_head_lease_holder_plans_a_get_with_the_entrys_validators() -> None:
    entry = stored(last_modified=LAST_MODIFIED)
    request = lease_holder("HEAD", query="b=2&a=1")
    job = planned(request, lines(x_api_key="k", x_other="o"), entry, CFG, has_query=True)
    assert (job.destination.host, job.destination.port) == ("origin.internal", 9000)
    assert job.destination.target == "/products/1?b=2&a=1"
    assert job.destination.host_header == "origin.internal:9000"
    assert job.headers == (
        ("x-api-key", "k"),
        ("If-None-Match", ETAG),
        ("If-Modified-Since", LAST_MODIFIED),
    )
    refreshing = job.state
    assert refreshing.method == "GET" and refreshing.stale is entry
    assert refreshing.request_headers == [(b"x-api-key", b"k")]  # what the variant is filed by
    assert (refreshing.stale_age_s, refreshing.looked_up_at) == (70.0, NOW)
    assert (refreshing.key, refreshing.origin) == ("v2:route-1:k", "route-1")
    assert (job.names.route, job.names.service) == ("products", "catalogue")
    assert job.timeout_s == 10.0


def test_the_refresh_is_guarded_only_by_the_credentials_it_sends() -> None:
    plain = planned(lease_holder(guard="cookie"), lines(cookie="s=1"))
    assert plain.state.guard == ""  # the cookie stays behind: an anonymous request
    cfg = config(background_refresh={"forward_headers": ["Cookie"]})
    with_cookie = planned(lease_holder(guard="cookie"), lines(cookie="s=1"), cfg=cfg)
    assert with_cookie.state.guard == "cookie"


def test_a_request_no_route_path_matches_is_unusable() -> None:
    elsewhere = RequestState("store", "GET", "h", "/other", key="k", origin="r")
    job = refresh.plan(target(), elsewhere, stale_served(stored()), [], False, False, CFG, NOW)
    assert isinstance(job, Unusable)


# -- the handler's access phase: answered stale at once, the refresh handed to the pool ----


class AccessKong:
    """The PDK calls a stale lease holder's ``access`` phase makes, recorded in `calls`."""

    def __init__(self, service: dict[str, Any] | None = None) -> None:
        self.calls: list[str] = []
        self.exits: list[tuple[int, Any, dict[str, Any]]] = []
        self.upstream: dict[str, str] = {}
        self.warnings: list[str] = []
        headers = {"host": "shop.example", "x-api-key": "k", "cookie": "s=1"}
        svc = service or SERVICE

        def call(name: str, value: Any) -> Callable[..., Any]:
            def pdk(*_: Any) -> Any:
                self.calls.append(name)
                return value

            return pdk

        self.nginx = SimpleNamespace(get_var=call("get_var", "GET /products/1?b=2 HTTP/1.1"))
        self.request = SimpleNamespace(get_headers=call("get_headers", headers))
        self.client = SimpleNamespace(get_consumer=call("get_consumer", None))
        self.router = SimpleNamespace(
            get_route=call("get_route", ROUTE), get_service=call("get_service", svc)
        )
        self.response = SimpleNamespace(exit=lambda *a: self.exits.append(a))
        self.service = SimpleNamespace(request=SimpleNamespace(set_headers=self.upstream.update))
        self.ctx = SimpleNamespace(shared=SimpleNamespace(set=call("ctx.set", None)))
        self.log = SimpleNamespace(warn=self.warnings.append)


class StaleClient:
    """A sidecar whose every lookup finds the stale entry and hands over the fill lease."""

    timeout_s = 0.05

    def __init__(self) -> None:
        self.released: list[bytes] = []

    def lookup(self, key: bytes, *_: Any, **__: Any) -> pb.LookupResponse:
        entry = wire.entry_to_pb(stale_entry())
        return pb.LookupResponse(
            outcome=pb.OUTCOME_STALE, entry=entry, age_ms=70_000, fill_lease=True
        )

    def release(self, key: bytes, timeout_s: float | None = None) -> pb.ReleaseResponse:
        self.released.append(key)
        return pb.ReleaseResponse()


class Pool:
    """Records submitted refreshes instead of running them; answers `started`."""

    def __init__(self, started: Started = Started.STARTED) -> None:
        self.started = started
        self.submitted: list[tuple[bytes, int]] = []

    def submit(self, key: bytes, job: Any, limit: int) -> Started:
        self.submitted.append((key, limit))
        return self.started


@pytest.fixture
def sidecar(monkeypatch: pytest.MonkeyPatch) -> StaleClient:
    client = StaleClient()
    monkeypatch.setattr(runtime, "client_for", lambda *a, **k: client)
    monkeypatch.setattr(runtime, "reporter", Reporter(interval_s=0))
    return client


def plugin(**fields: Any) -> handler.Plugin:
    settings = {"cache_control": True, "route_id": "route-1", **fields}
    settings["sidecar"] = {"address": "unix:/nonexistent.sock"}
    return handler.Plugin(settings)


def test_the_lease_holder_is_answered_stale_and_the_refresh_handed_to_the_pool(
    monkeypatch: pytest.MonkeyPatch, sidecar: StaleClient
) -> None:
    pool = Pool()
    monkeypatch.setattr(runtime, "refreshes", pool)
    p = plugin(background_refresh={"max_concurrent": 3})
    kong = AccessKong()
    p.access(kong)
    ((status, body, headers),) = kong.exits
    assert (status, body, headers["X-Cache-Status"]) == (200, b'{"v":1}', "Stale")
    assert pool.submitted and pool.submitted[0][1] == 3
    assert kong.calls == ["get_var", "get_headers", "get_consumer", "get_route", "get_service"]
    again = AccessKong()
    p.access(again)  # the route's target is remembered: a hit's round trips only
    assert again.calls == ["get_var", "get_headers", "get_consumer"]
    assert again.exits and sidecar.released == []


def test_a_full_pool_skips_the_refresh_and_gives_the_lease_up(
    monkeypatch: pytest.MonkeyPatch, sidecar: StaleClient
) -> None:
    monkeypatch.setattr(runtime, "refreshes", Pool(Started.FULL))
    kong = AccessKong()
    plugin().access(kong)
    assert kong.exits[0][2]["X-Cache-Status"] == "Stale"
    assert runtime.background.join(5)
    assert len(sidecar.released) == 1 and sidecar.released[0].startswith(b"v2:route-1:")


@pytest.mark.parametrize(
    ("fields", "service"),
    [({"consumer_scope": "always"}, None), ({}, {**SERVICE, "protocol": "grpc"})],
    ids=["consumer-key", "unusable-service"],
)
def test_without_a_usable_refresh_the_lease_holder_revalidates_in_the_request(
    monkeypatch: pytest.MonkeyPatch,
    sidecar: StaleClient,
    fields: dict[str, Any],
    service: dict[str, Any] | None,
) -> None:
    pool = Pool()
    monkeypatch.setattr(runtime, "refreshes", pool)
    kong = AccessKong(service)
    plugin(**fields).access(kong)
    assert kong.exits == [] and pool.submitted == []
    assert kong.upstream == {"If-None-Match": ETAG}  # the foreground revalidation
    assert "ctx.set" in kong.calls
    if service is not None:
        assert any("no background refresh" in line for line in kong.warnings)

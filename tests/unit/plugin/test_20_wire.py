"""strata.v1 conversions (`kong_plugin.wire`), and what the handler puts on the wire: the
route's key prefix in every StoreRequest, entry times from the plugin's one clock."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from strata.v1 import cache_pb2 as pb

from kong_plugin import runtime, wire
from kong_plugin.cache_key import route_prefix
from kong_plugin.client import SidecarClient
from kong_plugin.freshness import EntryTiming
from kong_plugin.handler import Plugin
from kong_plugin.handover import CTX_KEY
from kong_plugin.headers import Headers
from kong_plugin.origin import OriginHealth
from kong_plugin.recent import RecentKeys
from kong_plugin.stored import StoredEntry

NOW = 1_700_000_000.0


def test_an_entry_round_trips_through_the_proto() -> None:
    entry = StoredEntry(
        203,
        Headers({"content-type": ("text/plain",), "x-a": ("1", "2"), "x-raw": ("\udcff",)}),
        b"\x00body",
        EntryTiming(NOW + 0.25, 60, 10, 20, 90),
        tags=("t1", "t2"),
        vary=("accept",),
    )
    message = wire.entry_to_pb(entry)
    assert message.format_version == wire.ENTRY_FORMAT
    assert [(h.name, h.value) for h in message.headers] == [
        (b"content-type", b"text/plain"),
        (b"x-a", b"1"),
        (b"x-a", b"2"),
        (b"x-raw", b"\xff"),  # a byte that was not UTF-8 goes back as it came
    ]
    assert (message.stored_at_ms, message.ttl_ms, message.storage_ttl_ms) == (
        1_700_000_000_250,
        60_000,
        90_000,
    )
    assert wire.entry_from_pb(message) == entry


def test_header_names_are_lower_cased_on_the_way_in() -> None:
    headers = wire.headers_from_pb([pb.Header(name=b"ETag", value=b'"x"')])
    assert headers.get_all("etag") == ('"x"',)


@pytest.mark.parametrize("outcome", [pb.OUTCOME_HIT, pb.OUTCOME_STALE])
def test_a_found_entry_carries_the_sidecars_age_in_seconds(outcome: pb.Outcome) -> None:
    entry = wire.entry_to_pb(StoredEntry(200, Headers(), b"x", EntryTiming(NOW, 60)))
    answer = pb.LookupResponse(outcome=outcome, entry=entry, age_ms=1500, now_ms=1)
    found = wire.found_from_pb(answer)
    assert found.entry is not None and found.age_s == 1.5 and not found.fill_lease
    assert not wire.missed(answer)


def test_a_miss_carries_no_entry_and_may_hold_the_lease() -> None:
    answer = pb.LookupResponse(outcome=pb.OUTCOME_MISS, fill_lease=True)
    found = wire.found_from_pb(answer)
    assert (found.entry, found.fill_lease) == (None, True)
    assert wire.missed(answer)


def test_requests_are_built_with_their_header_lines_and_route() -> None:
    # (Accept* lines go out canonical: test_36_vary_lists.py)
    lines = [(b"x-variant", b"text/html"), (b"x-variant", b"*/*")]
    lookup = wire.lookup_request(b"v2:r:k", lines, 250)
    assert (lookup.key, lookup.coalesce_wait_ms, len(lookup.request_headers)) == (
        b"v2:r:k",
        250,
        2,
    )
    store = wire.store_request(b"v2:r:k", pb.Entry(status=200), lines, "v2:r:")
    assert store.route == "v2:r:" and store.request_headers[1].value == b"*/*"
    with pytest.raises(ValueError, match="exactly one"):
        wire.invalidate_request(b"k", None, "t")


# -- the handler on the wire ---------------------------------------------------------------


class WireClient(SidecarClient):
    """The product client with its transport replaced: every call is kept and answered
    (lookups: a miss with the fill lease)."""

    def __init__(self) -> None:
        super().__init__("unix:/nonexistent.sock", 0.05)
        self.calls: list[pb.Call] = []

    def call(self, call: pb.Call, timeout_s: float | None = None, retry: bool = True) -> pb.Reply:
        self.calls.append(call)
        op = call.WhichOneof("op")
        if op == "lookup":
            return pb.Reply(lookup=pb.LookupResponse(outcome=pb.OUTCOME_MISS, fill_lease=True))
        return pb.Reply(**{op: getattr(pb, f"{op.capitalize()}Response")()})

    def sent(self, op: str) -> list[Any]:
        return [getattr(c, op) for c in self.calls if c.WhichOneof("op") == op]


def kong_for(shared: dict[str, Any], route: dict[str, str] | None) -> Any:
    """The PDK calls of a cacheable GET's access and response phases."""
    response_headers = {"content-type": "text/plain", "cache-control": "max-age=60"}
    return SimpleNamespace(
        nginx=SimpleNamespace(
            get_var=lambda name: "GET /items?id=1 HTTP/1.1",
            get_ctx=lambda name: response_headers if name == "buffered_headers" else None,
        ),
        request=SimpleNamespace(get_headers=lambda limit: {"host": "example.com"}),
        router=SimpleNamespace(
            get_route=lambda: route, get_service=lambda: {"read_timeout": 60_000}
        ),
        client=SimpleNamespace(get_consumer=lambda: None, get_credential=lambda: None),
        ctx=SimpleNamespace(shared=SimpleNamespace(set=shared.__setitem__, get=shared.get)),
        service=SimpleNamespace(
            request=SimpleNamespace(clear_header=lambda name: None),
            response=SimpleNamespace(get_raw_body=lambda: b"hello"),
        ),
        response=SimpleNamespace(get_status=lambda: 200, set_headers=lambda headers: None),
    )


@pytest.fixture
def wire_client(monkeypatch: pytest.MonkeyPatch) -> WireClient:
    client = WireClient()
    monkeypatch.setattr(runtime, "client_for", lambda address, timeout, uid=None: client)
    monkeypatch.setattr(runtime, "origins", OriginHealth())
    monkeypatch.setattr(runtime, "uncacheable", RecentKeys())
    return client


@pytest.mark.parametrize(
    ("config_route", "matched", "route_id"),
    [
        ("r-1", None, "r-1"),  # attached to a route: its config names it
        (None, {"id": "r 2"}, "r 2"),  # on a service: the matched route
        (None, None, None),  # no route at all: the key's "global" prefix
    ],
)
def test_the_store_request_carries_the_routes_key_prefix(
    wire_client: WireClient,
    config_route: str | None,
    matched: dict[str, str] | None,
    route_id: str | None,
) -> None:
    config: dict[str, Any] = {"sidecar": {"address": "unix:/nonexistent.sock"}}
    if config_route:
        config["route_id"] = config_route
    plugin = Plugin(config, clock=lambda: NOW)
    shared: dict[str, Any] = {}
    kong = kong_for(shared, matched)
    plugin.access(kong)
    assert CTX_KEY in shared  # forwarded, to be stored
    plugin.response(kong)
    assert runtime.background.join(5)
    [store] = wire_client.sent("store")
    prefix = route_prefix(route_id)
    assert store.route == prefix and store.key.decode().startswith(prefix)
    assert route_id is not None or prefix == "v2:global:"
    # times from the plugin's clock (no time passed: nothing back-dated); Kong's cache_ttl
    assert store.entry.stored_at_ms == int(NOW * 1000) and store.entry.ttl_ms == 300_000

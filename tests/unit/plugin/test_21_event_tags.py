"""The event tags every stored entry carries (`kong_plugin.event_tags`), the per-route
names they need (`kong_plugin.route_facts`) and what the handler stores with them."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strata.v1 import cache_pb2 as pb

from kong_plugin import decide, runtime
from kong_plugin.config import parse_config
from kong_plugin.event_tags import MAX_TAG_CHARS, entry_tags, name_tag
from kong_plugin.handler import Plugin
from kong_plugin.inflight import RequestState
from kong_plugin.invalidation import MAX_TAGS
from kong_plugin.origin import OriginHealth
from kong_plugin.recent import RecentKeys
from kong_plugin.route_facts import NAMES_MAX_AGE_S, Names, RouteFacts
from sidecar.events import tagging
from tests.unit.plugin.test_20_wire import WireClient

VECTORS = json.loads(
    (Path(__file__).parents[1] / "sidecar" / "events" / "tag_vectors.json").read_text("utf-8")
)


# -- the rules, held to the sidecar's ------------------------------------------------------


@pytest.mark.parametrize("case", VECTORS["entries"], ids=lambda c: c["path"][:40])
def test_entry_tag_vectors(case: dict[str, Any]) -> None:
    tags = entry_tags(
        case["path"],
        case["query"],
        fold_case=case.get("fold_case", False),
        route_name=case.get("route_name", ""),
        service_name=case.get("service_name", ""),
    )
    assert list(tags) == case["tags"]


_PATH_CHARS = st.sampled_from([*"/ab.%7eE2fF4~-_Zé ", "%41", "%2f", "..", "/./"])
_PATHS = st.lists(_PATH_CHARS, max_size=40).map("".join)
_QUERIES = st.lists(st.sampled_from([*"a=b&&%2f%7E+;é", "%zz", "x=1"]), max_size=20).map("".join)
_NAMES = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20)


@settings(max_examples=400, deadline=None)
@given(path=_PATHS, query=_QUERIES, fold=st.booleans(), route=_NAMES, service=_NAMES)
def test_same_tags_as_the_sidecar(
    path: str, query: str, fold: bool, route: str, service: str
) -> None:
    """Any path, query and (usable) names: exactly the sidecar's `entry_tags`."""
    mine = entry_tags(path, query, fold_case=fold, route_name=route, service_name=service)
    theirs = tagging.entry_tags(path, query, fold_case=fold, route_name=route, service_name=service)
    assert mine == theirs


def test_long_paths_and_deep_paths_stay_within_the_tag_rules() -> None:
    deep = "/" + "/".join("s" * 40 for _ in range(30))
    tags = entry_tags(deep, "q=" + "v" * 300, route_name="r", service_name="s")
    assert tags[0].startswith("url#")
    assert len(tags) <= 1 + tagging.PREFIX_DEPTH + 1 + 2
    assert all(len(t) <= MAX_TAG_CHARS and t.isascii() and " " not in t for t in tags)


def test_a_name_that_cannot_be_a_tag_gives_none() -> None:
    assert name_tag("route-name:", "") == ""
    assert name_tag("route-name:", "produits-café") == ""  # Kong names may be UTF-8
    assert name_tag("service:", "x" * MAX_TAG_CHARS) == ""
    assert name_tag("service:", "orders") == "service:orders"
    tags = entry_tags("/p", route_name="a b", service_name="ok")
    assert tags == ("url:/p", "path:/", "path:/p", "service:ok")


# -- the names, remembered per route -----------------------------------------------------------


class Reads:
    """Counts the route and service reads a `RouteFacts` makes."""

    def __init__(self) -> None:
        self.route = 0
        self.service = 0
        self.route_name = "products"
        self.service_name = "catalogue"

    def read_route(self) -> str:
        self.route += 1
        return self.route_name

    def read_service(self) -> tuple[str, int | None]:
        self.service += 1
        return self.service_name, 30_000


def test_names_are_read_once_per_route_per_minute() -> None:
    now = [100.0]
    facts = RouteFacts(lambda: now[0])
    reads = Reads()
    for _ in range(5):
        assert facts.names("r1", reads.read_route, reads.read_service) == Names(
            "products", "catalogue"
        )
    assert (reads.route, reads.service) == (1, 1)
    facts.names("r2", reads.read_route, reads.read_service)  # another route: its own reads
    assert (reads.route, reads.service) == (2, 2)
    reads.route_name, reads.service_name = "renamed", "svc2"
    now[0] += NAMES_MAX_AGE_S - 0.5
    assert facts.names("r1", reads.read_route, reads.read_service).route == "products"
    assert (reads.route, reads.service) == (2, 2)
    now[0] += 0.5  # 60 s after the read: read again, the rename is picked up
    assert facts.names("r1", reads.read_route, reads.read_service) == Names("renamed", "svc2")
    assert (reads.route, reads.service) == (3, 3)


def test_the_read_timeout_read_counts_as_a_fresh_service_read() -> None:
    now = [0.0]
    facts = RouteFacts(lambda: now[0])
    reads = Reads()
    assert facts.read_timeout("r1", reads.read_service) == 30_000
    assert facts.read_timeout("r1", reads.read_service) == 30_000
    assert reads.service == 1
    assert facts.names("r1", reads.read_route, reads.read_service).service == "catalogue"
    assert (reads.route, reads.service) == (1, 1)  # only the route's name was missing
    facts.note_route_name("r3", "seen-anyway")  # a global plugin reads the route anyway
    assert facts.names("r3", reads.read_route, reads.read_service).route == "seen-anyway"
    assert reads.route == 1


def test_facts_of_at_most_max_routes_are_kept() -> None:
    facts = RouteFacts(lambda: 0.0, max_routes=3)
    reads = Reads()
    for route in ("a", "b", "c", "d"):
        facts.names(route, reads.read_route, reads.read_service)
    assert len(facts) == 3
    facts.names("a", reads.read_route, reads.read_service)  # forgotten first: read again
    assert reads.route == 5


# -- the handler: what is stored, and what it costs ------------------------------------------


class CountingKong(SimpleNamespace):
    """A cacheable GET's access and response phases, counting ``kong.router`` calls."""

    def __init__(self, target: str, route: dict[str, str] | None) -> None:
        self.calls: list[str] = []
        shared: dict[str, Any] = {}
        response_headers = {"content-type": "text/plain", "cache-control": "max-age=60"}

        def get_route() -> dict[str, str] | None:
            self.calls.append("get_route")
            return route

        def get_service() -> dict[str, Any]:
            self.calls.append("get_service")
            return {"name": "catalogue", "read_timeout": 60_000}

        super().__init__(
            nginx=SimpleNamespace(
                get_var=lambda name: f"GET {target} HTTP/1.1",
                get_ctx=lambda name: response_headers if name == "buffered_headers" else None,
            ),
            request=SimpleNamespace(get_headers=lambda limit: {"host": "example.com"}),
            router=SimpleNamespace(get_route=get_route, get_service=get_service),
            client=SimpleNamespace(get_consumer=lambda: None, get_credential=lambda: None),
            ctx=SimpleNamespace(shared=SimpleNamespace(set=shared.__setitem__, get=shared.get)),
            service=SimpleNamespace(
                request=SimpleNamespace(clear_header=lambda name: None),
                response=SimpleNamespace(get_raw_body=lambda: b"hello"),
            ),
            response=SimpleNamespace(get_status=lambda: 200, set_headers=lambda h: None),
        )


@pytest.fixture
def wire_client(monkeypatch: pytest.MonkeyPatch) -> WireClient:
    client = WireClient()
    monkeypatch.setattr(runtime, "client_for", lambda address, timeout, uid=None: client)
    monkeypatch.setattr(runtime, "origins", OriginHealth())
    monkeypatch.setattr(runtime, "uncacheable", RecentKeys())
    return client


def _through(plugin: Plugin, kong: CountingKong, client: WireClient) -> pb.StoreRequest:
    plugin.access(kong)
    plugin.response(kong)
    assert runtime.background.join(5)
    store: pb.StoreRequest = client.sent("store")[-1]
    return store


def test_stored_entries_carry_the_event_tags_and_names_cost_one_read_a_minute(
    wire_client: WireClient,
) -> None:
    now = [0.0]
    config = {
        "sidecar": {"address": "unix:/nonexistent.sock"},
        "route_id": "r-1",
        "ignore_query_params": ["utm_*"],
    }
    plugin = Plugin(config, ticker=lambda: now[0])
    route = {"id": "r-1", "name": "products"}
    kong = CountingKong("/Items/./1?utm_x=9&b=2&a=1", route)
    store = _through(plugin, kong, wire_client)
    tags = list(store.entry.tags)
    # the query as sent (utm_x is not in the key, but in the URL tag), canonical order
    assert "url:/Items/1?a=1&b=2&utm_x=9" in tags
    for tag in ("path:/", "path:/Items/", "path:/Items/1"):
        assert tag in tags
    assert "route-name:products" in tags and "service:catalogue" in tags
    assert "catalog" not in tags and tags[0].startswith("uri:")  # the plugin's own stay
    # access read the service once (coalescing cap); the store path only the route
    assert sorted(kong.calls) == ["get_route", "get_service"]

    for _ in range(3):
        kong = CountingKong("/Items/2", route)
        assert "route-name:products" in _through(plugin, kong, wire_client).entry.tags
        assert kong.calls == []  # within 60 s: no router call at all
    now[0] += NAMES_MAX_AGE_S
    kong = CountingKong("/Items/3", {"id": "r-1", "name": "goods"})
    assert "route-name:goods" in _through(plugin, kong, wire_client).entry.tags
    assert sorted(kong.calls) == ["get_route", "get_service"]


def test_a_global_plugin_learns_the_route_name_from_the_route_it_reads_anyway(
    wire_client: WireClient,
) -> None:
    plugin = Plugin({"sidecar": {"address": "unix:/nonexistent.sock"}})
    kong = CountingKong("/a", {"id": "r-9", "name": "any"})
    tags = _through(plugin, kong, wire_client).entry.tags
    assert "route-name:any" in tags and "service:catalogue" in tags
    assert kong.calls == ["get_route", "get_service"]  # the access phase's two reads only


def test_event_tags_off_stores_no_scheme_tag_and_reads_no_name(wire_client: WireClient) -> None:
    config = {
        "sidecar": {"address": "unix:/nonexistent.sock"},
        "route_id": "r-1",
        "event_tags": False,
        "coalesce_wait_ms": 0,
    }
    plugin = Plugin(config)
    kong = CountingKong("/items?a=1", {"id": "r-1", "name": "products"})
    tags = list(_through(plugin, kong, wire_client).entry.tags)
    assert tags == ["uri:example.com/items"]
    assert kong.calls == []


def test_a_route_without_names_gives_no_name_tags(wire_client: WireClient) -> None:
    plugin = Plugin({"sidecar": {"address": "unix:/nonexistent.sock"}, "route_id": "r-1"})
    kong = CountingKong("/n", {"id": "r-1"})
    kong.router.get_service = lambda: {"read_timeout": 1000}
    tags = list(_through(plugin, kong, wire_client).entry.tags)
    assert tags == ["uri:example.com/n", "url:/n", "path:/", "path:/n"]


# -- the tag budget ------------------------------------------------------------------------------


def _plan(header_tags: int, cfg: Any) -> decide.StorePlan:
    headers = {
        "cache-control": "max-age=60",
        "content-type": "text/plain",
        "surrogate-key": " ".join(f"k{i}" for i in range(header_tags)),
    }
    state = RequestState("store", "GET", "example.com", "/a/b/c", query="x=1", key="k")
    upstream = decide.Upstream(200, headers, True, 0.0)
    step = decide.after_response(state, upstream, cfg)
    assert isinstance(step, decide.Proxied)
    return decide.plan_store(state, upstream, step.decision, b"", cfg, Names("r", "s"))


def test_event_tags_count_against_the_sidecars_limit() -> None:
    cfg = parse_config({"tags": ["static"]})
    own = 1 + 1 + 4 + 2 + 1  # uri, url, path x4, route and service names, static
    full = _plan(MAX_TAGS - own, cfg)
    assert full.entry is not None and len(full.entry.tags) == MAX_TAGS
    over = _plan(MAX_TAGS - own + 1, cfg)
    assert over.entry is None and over.detail == "tags-dropped"  # never stored half-tagged
    off = _plan(MAX_TAGS - own + 1, parse_config({"tags": ["static"], "event_tags": False}))
    assert off.entry is not None

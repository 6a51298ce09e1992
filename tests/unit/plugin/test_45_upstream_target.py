"""Where a background refresh goes (`kong_plugin.upstream_target`): Kong 3.9's upstream
path rules (``get_upstream_uri_v0`` after ``normalize``, then ``escape``), the query as
sent, the ``Host`` header and TLS name, and the route and service entities a refresh
refuses. The path rules are also checked against kongsim's router (its own code for the
same Kong facts), which the plugin must not import."""

from __future__ import annotations

from typing import Any

import pytest

from kong_plugin.upstream_target import (
    Destination,
    Target,
    Unusable,
    destination,
    escape,
    matched_prefix,
    normalize,
    target_of,
    tls_name,
    upstream_path_v0,
)
from kongsim.config.entities import DeclarativeConfig, Route, Service
from kongsim.request import uri as kongsim_uri
from kongsim.request.router import Router

SERVICE_ID = "5b1c5a3e-0000-4000-8000-000000000001"
ROUTE_ID = "5b1c5a3e-0000-4000-8000-000000000002"


def service(**fields: Any) -> dict[str, Any]:
    return {"protocol": "http", "host": "origin.internal", "port": 8080, **fields}


def route(**fields: Any) -> dict[str, Any]:
    return {"paths": ["/api"], "strip_path": True, "preserve_host": False, **fields}


def target(route_fields: dict[str, Any], service_fields: dict[str, Any]) -> Target:
    found = target_of(route(**route_fields), service(**service_fields))
    assert isinstance(found, Target), found
    return found


def dest(t: Target, path: str, query: str = "", has_query: bool = False) -> Destination:
    found = destination(t, path, query, has_query, "client.example:8000")
    assert isinstance(found, Destination), found
    return found


# -- the v0 path rules, one per branch of get_upstream_uri_v0 -----------------------------


@pytest.mark.parametrize(
    ("strip", "prefix", "path", "base", "expected"),
    [
        # service path ends with "/"
        (True, "/api", "/api", "/", "/"),
        (True, "/api", "/api/", "/svc/", "/svc/"),
        (True, "/api", "/api", "/svc/", "/svc"),
        (True, "/api", "/api/users", "/svc/", "/svc/users"),
        (True, "/api", "/apiusers", "/svc/", "/svc/users"),
        (False, "/", "/api/users", "/svc/", "/svc/api/users"),
        # service path without a trailing "/"
        (True, "/api", "/api", "/svc", "/svc"),
        (True, "/api", "/api/", "/svc", "/svc/"),
        (True, "/api", "/api/users", "/svc", "/svc/users"),
        (True, "/api", "/apiusers", "/svc", "/svc/users"),
        (False, "/", "/", "/svc", "/svc"),
        (False, "/", "/api/users", "/svc", "/svc/api/users"),
        # a postfix that starts with dot segments is sanitised
        (True, "/api", "/api..", "/svc", "/svc"),
        (True, "/api", "/api../x", "/svc", "/svc/x"),
    ],
)
def test_upstream_path_v0(strip: bool, prefix: str, path: str, base: str, expected: str) -> None:
    assert upstream_path_v0(strip, prefix, path, base) == expected


def test_normalize_and_escape_follow_kongs_uri_rules() -> None:
    assert normalize("/a/%7euser/%2F/%41b") == "/a/~user/%2F/Ab"  # reserved stay escaped
    assert normalize("/a//b/./c/../d") == "/a/b/d"
    assert escape('/a b/é"') == "/a%20b/%C3%A9%22"
    assert escape("/keep/!$&'()*+,;=:@[]~%41") == "/keep/!$&'()*+,;=:@[]~%41"


@pytest.mark.parametrize(
    "path",
    ["/", "/a/%7e/%2f/%25", "/x/../../y", "//a//b/", "/./a/.", "/%C3%A9 x", "/a/%2e%2e/b", "/.."],
)
def test_normalize_and_escape_agree_with_kongsim(path: str) -> None:
    assert normalize(path) == kongsim_uri.normalize(path, True)
    assert escape(normalize(path)) == kongsim_uri.escape(kongsim_uri.normalize(path, True))


# -- the request's destination -----------------------------------------------------------


def test_the_query_is_kept_raw_and_an_empty_one_too() -> None:
    t = target({}, {})
    assert dest(t, "/api/x", "b=2&a=%20x&a", True).target == "/x?b=2&a=%20x&a"
    assert dest(t, "/api/x", "", True).target == "/x?"
    assert dest(t, "/api/x").target == "/x"


def test_the_host_header_is_the_services_unless_the_route_preserves_the_clients() -> None:
    assert dest(target({}, {}), "/api").host_header == "origin.internal:8080"
    assert dest(target({}, {"port": 80}), "/api").host_header == "origin.internal"
    https = dest(target({}, {"protocol": "https", "port": 443}), "/api")
    assert (https.host_header, https.tls_name) == ("origin.internal", "origin.internal")
    kept = dest(target({"preserve_host": True}, {}), "/api")
    assert kept.host_header == "client.example:8000"
    assert (kept.host, kept.port) == ("origin.internal", 8080)  # connects to the service


def test_tls_name_drops_the_port_and_ipv6_brackets() -> None:
    assert tls_name("example.com:8443") == "example.com"
    assert tls_name("[::1]:8443") == "::1"
    assert tls_name("10.0.0.1") == "10.0.0.1"


def test_a_regex_route_strips_what_the_regex_matched() -> None:
    t = target({"paths": [r"~/v(?<version>\d+)/items"]}, {"path": "/base"})
    assert dest(t, "/v2/items/7").target == "/base/7"
    assert dest(t, "/v2/itemsX").target == "/base/X"


def test_regex_paths_are_tried_before_prefixes_and_longer_prefixes_first() -> None:
    t = target({"paths": ["/a", "/a/b", r"~/a/b/\d+"]}, {})
    assert matched_prefix(t.paths, "/a/b/12/x") == "/a/b/12"
    assert matched_prefix(t.paths, "/a/b/x") == "/a/b"
    assert matched_prefix(t.paths, "/a/x") == "/a"
    assert matched_prefix(t.paths, "/z") is None
    assert isinstance(destination(t, "/z", "", False, ""), Unusable)


def test_a_route_without_paths_keeps_the_whole_path() -> None:
    t = target({"paths": None}, {"path": "/svc"})
    assert dest(t, "/anything/here").target == "/svc/anything/here"


# -- entities a refresh refuses ---------------------------------------------------------


@pytest.mark.parametrize(
    ("route_fields", "service_fields", "reason"),
    [
        ({}, {"protocol": "grpc"}, "protocol"),
        ({}, {"host": ""}, "host"),
        ({}, {"ca_certificates": ["c1"]}, "ca_certificates"),
        ({}, {"client_certificate": {"id": "c"}}, "client_certificate"),
        ({"path_handling": "v1"}, {}, "path_handling"),
        ({"paths": ["~/(unclosed"]}, {}, "regex"),
    ],
)
def test_unusable_routes_and_services(
    route_fields: dict[str, Any], service_fields: dict[str, Any], reason: str
) -> None:
    found = target_of(route(**route_fields), service(**service_fields))
    assert isinstance(found, Unusable) and reason in found.reason


def test_no_route_or_service_is_unusable() -> None:
    assert isinstance(target_of(None, service()), Unusable)
    assert isinstance(target_of(route(), None), Unusable)


def test_tls_is_verified_only_when_the_service_says_true_and_ports_default() -> None:
    assert target({}, {"protocol": "https", "tls_verify": True}).tls_verify
    assert not target({}, {"protocol": "https"}).tls_verify
    assert not target({}, {"protocol": "https", "tls_verify": False}).tls_verify
    assert target({}, {"protocol": "https", "port": None}).port == 443
    assert target({}, {"port": None}).port == 80


def test_names_are_kept_for_event_tags() -> None:
    t = target({"name": "products"}, {"name": "catalogue"})
    assert (t.route_name, t.service_name) == ("products", "catalogue")


# -- agreement with kongsim's router ----------------------------------------------------

ROUTE_PATHS = [("/api",), ("/api/",), (r"~/v\d+",), ("/a", "/a/b"), (r"~/r(?<n>\d)/", "/r")]
SERVICE_PATHS = [None, "/", "/svc", "/svc/"]
REQUEST_PATHS = [
    "/api",
    "/api/",
    "/api/x/y",
    "/apix",
    "/api/../api/z",
    "/v1",
    "/v12/z/",
    "/a/b/c",
    "/a/bc",
    "/r1/x",
    "/r/x",
    "/api//x",
    "/api/%7e%2F x",
]


@pytest.mark.parametrize("strip", [True, False])
@pytest.mark.parametrize("paths", ROUTE_PATHS)
@pytest.mark.parametrize("base", SERVICE_PATHS)
def test_the_upstream_path_agrees_with_kongsim(
    strip: bool, paths: tuple[str, ...], base: str | None
) -> None:
    svc = Service(SERVICE_ID, "svc", "http", "origin.internal", 8080, base)
    rt = Route(ROUTE_ID, "rt", SERVICE_ID, 0, paths=paths, strip_path=strip)
    router = Router(
        DeclarativeConfig(services=(svc,), routes=(rt,), services_by_id={SERVICE_ID: svc})
    )
    t = target_of(rt.entity(), svc.entity())
    assert isinstance(t, Target)
    compared = 0
    for path in REQUEST_PATHS:
        match = router.match("GET", "client.example", kongsim_uri.normalize(path, True), {}, 80)
        mine = destination(t, path, "", False, "client.example")
        if match is None:
            assert isinstance(mine, Unusable), path
            continue
        assert isinstance(mine, Destination), path
        assert mine.target == match.upstream_path, (path, paths, base, strip)
        compared += 1
    assert compared > 0

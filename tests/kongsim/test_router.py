"""kongsim.request.router and .uri: route priority, matching criteria, upstream paths."""

from __future__ import annotations

from typing import Any

import pytest

from kongsim.config.declarative import parse
from kongsim.request.router import Router, upstream_path_v0
from kongsim.request.uri import escape, ngx_normalize, normalize


def router(routes: list[dict[str, Any]], service_path: str | None = None) -> Router:
    service: dict[str, Any] = {"name": "s", "host": "up", "port": 80, "routes": routes}
    if service_path:
        service["path"] = service_path
    return Router(parse({"_format_version": "3.0", "services": [service]}))


def matched(
    r: Router,
    path: str,
    method: str = "GET",
    host: str = "kong",
    headers: dict[str, list[str]] | None = None,
) -> str | None:
    m = r.match(method, host, normalize(path), headers or {}, 8000)
    return m.route.name if m else None


def test_longest_prefix_wins_regardless_of_order() -> None:
    r = router([{"name": "short", "paths": ["/a"]}, {"name": "long", "paths": ["/a/b"]}])
    assert matched(r, "/a/b/c") == "long"
    assert matched(r, "/a/x") == "short"
    assert matched(r, "/ab") == "short"  # plain string prefix, like Kong
    assert matched(r, "/b") is None


def test_regex_beats_prefix_and_regex_priority_orders_regexes() -> None:
    r = router(
        [
            {"name": "prefix", "paths": ["/users/123"]},
            {"name": "low", "paths": [r"~/users/\d+$"], "regex_priority": 1},
            {"name": "high", "paths": [r"~/users/(?<id>\d+)$"], "regex_priority": 5},
        ]
    )
    m = r.match("GET", "kong", "/users/123", {}, 8000)
    assert m is not None and m.route.name == "high"
    assert m.captures == {"unnamed": {0: "/users/123", 1: "123"}, "named": {"id": "123"}}


def test_more_criteria_beat_fewer_and_plain_hosts_beat_wildcards() -> None:
    r = router(
        [
            {"name": "path", "paths": ["/"]},
            {"name": "wild", "paths": ["/"], "hosts": ["*.example.com"]},
            {"name": "plain", "paths": ["/"], "hosts": ["api.example.com"]},
            {"name": "method", "paths": ["/"], "hosts": ["api.example.com"], "methods": ["POST"]},
        ]
    )
    assert matched(r, "/x", host="api.example.com") == "plain"
    assert matched(r, "/x", "POST", host="api.example.com") == "method"
    assert matched(r, "/x", host="www.example.com") == "wild"
    assert matched(r, "/x", host="example.com") == "path"
    assert matched(r, "/x", host="API.Example.com:8000") == "plain"


def test_hosts_with_port_and_suffix_wildcard() -> None:
    r = router([{"name": "p", "hosts": ["a.test:9000"]}, {"name": "w", "hosts": ["b.*"]}])
    assert matched(r, "/", host="a.test:9000") == "p"
    assert matched(r, "/", host="a.test") is None
    assert matched(r, "/", host="b.anything") == "w"


def test_methods_and_headers() -> None:
    r = router(
        [
            {"name": "get", "paths": ["/m"], "methods": ["GET", "HEAD"]},
            {"name": "hdr", "paths": ["/m"], "headers": {"x-version": ["v2", "V3"]}},
        ]
    )
    assert matched(r, "/m", "HEAD") == "get"
    assert matched(r, "/m", "POST") is None
    assert matched(r, "/m", "POST", headers={"x-version": ["v3"]}) == "hdr"
    # same number of criteria: the route with header criteria ranks first (Kong 3.x priority)
    assert matched(r, "/m", "GET", headers={"x-version": ["v2"]}) == "hdr"


@pytest.mark.parametrize(
    ("strip", "prefix", "req", "base", "expected"),
    [
        (True, "/users", "/users/1", "/", "/1"),
        (True, "/users", "/users", "/", "/"),
        (True, "/users", "/users/", "/", "/"),
        (True, "/users", "/users/1", "/api", "/api/1"),
        (True, "/users", "/users", "/api", "/api"),
        (True, "/users", "/users/", "/api", "/api/"),
        (True, "/users", "/usersX", "/api", "/api/X"),
        (True, "/users", "/users", "/api/", "/api"),
        (True, "/users", "/users/", "/api/", "/api/"),
        (True, "/users", "/users/1", "/api/", "/api/1"),
        (True, "/users/", "/users/1", "/api/", "/api/1"),
        (False, "/users", "/users/1", "/", "/users/1"),
        (False, "/users", "/users/1", "/api", "/api/users/1"),
        (False, "/users", "/users/1", "/api/", "/api/users/1"),
        (False, "/", "/", "/api", "/api"),
    ],
)
def test_upstream_path_v0(strip: bool, prefix: str, req: str, base: str, expected: str) -> None:
    assert upstream_path_v0(strip, prefix, req, base) == expected


def test_match_computes_upstream_path_and_preserve_host() -> None:
    r = router([{"name": "u", "paths": ["/users"], "preserve_host": True}], service_path="/api")
    m = r.match("GET", "Client.Host:81", "/users/7", {}, 8000)
    assert m is not None
    assert (m.upstream_path, m.upstream_host, m.prefix) == ("/api/7", "Client.Host:81", "/users")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/a/./b/../c", "/a/c"),
        ("/a//b", "/a/b"),
        ("/%7Euser/%41", "/~user/A"),
        ("/a%2fb", "/a%2Fb"),
        ("/a/%2e%2e/b", "/b"),
        ("/", "/"),
    ],
)
def test_normalize_like_kong(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_escape_keeps_reserved_and_encodes_others() -> None:
    assert escape("/a b/ü?x=1") == "/a%20b/%C3%BC?x=1"


def test_prefix_is_the_matched_path_only_with_strip_path() -> None:
    """kong/router/atc.lua: match_t.prefix = strip_path and matched_path or nil (so no
    X-Forwarded-Prefix without strip_path)."""
    r = router(
        [
            {"name": "strip", "paths": ["/s"]},
            {"name": "keep", "paths": ["/k"], "strip_path": False},
            {"name": "rx", "paths": [r"~/r/\d+"]},
        ]
    )
    for path, prefix in [("/s/x", "/s"), ("/k/x", "/"), ("/r/12/x", "/r/12")]:
        m = r.match("GET", "kong", path, {}, 8000)
        assert m is not None and m.prefix == prefix, path


def test_uri_captures_are_empty_without_a_matching_group() -> None:
    """atc.lua has_capture: uri_captures only when a key other than [0] exists."""
    r = router([{"name": "rx", "paths": [r"~/a(/b)?(?<n>/c)?$"]}])
    m = r.match("GET", "kong", "/a", {}, 8000)
    assert m is not None and m.captures == {}
    m = r.match("GET", "kong", "/a/b", {}, 8000)
    assert m is not None and m.captures == {"unnamed": {0: "/a/b", 1: "/b"}, "named": {}}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("/a%2Fb", "/a/b"), ("/a/%2e%2e/b", "/b"), ("/a//b/./c", "/a/b/c"), ("/%41", "/A")],
)
def test_ngx_normalize_decodes_everything_like_nginx_uri(raw: str, expected: str) -> None:
    assert ngx_normalize(raw) == expected

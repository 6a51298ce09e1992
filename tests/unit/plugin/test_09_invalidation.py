"""Tags and invalidation after writes (RFC 9111 §4.4)."""

from __future__ import annotations

import pytest

from kong_plugin.config import parse_config
from kong_plugin.invalidation import (
    MAX_TAGS,
    entry_tags,
    header_tags,
    invalidation_targets,
    is_write,
    uri_tag,
)

C = parse_config({"tags": ["catalog"]})
HOST = "api.example.com"


def targets(method="POST", status=201, *, path="/items", headers=None, config=C, host=HOST):
    return invalidation_targets(
        method, status, host=host, path=path, response_headers=headers or {}, config=config
    ).tags


def test_successful_write_invalidates_its_path_and_static_tags_section_4_4():
    assert targets() == ("uri:api.example.com/items", "catalog")


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "PURGE"])
def test_unsafe_methods_invalidate(method):
    assert uri_tag(HOST, "/items", C) in targets(method)


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "TRACE"])
def test_safe_methods_never_invalidate(method):
    assert targets(method) == ()


@pytest.mark.parametrize("status", [100, 400, 404, 500, 503])
def test_error_responses_do_not_invalidate_section_4_4(status):
    assert targets(status=status) == ()


def test_redirects_and_successes_invalidate():
    assert targets(status=204)
    assert targets(status=303)


def test_methods_configured_as_cacheable_are_not_writes():
    """Kong-style configs cache POST (e.g. GraphQL); those must not purge each other."""
    c = parse_config({"request_method": ["GET", "HEAD", "POST"]})
    assert not is_write("POST", c)
    assert targets(config=c) == ()
    assert is_write("DELETE", c)


def test_invalidate_on_write_off():
    assert targets(config=parse_config({"invalidate_on_write": False})) == ()


def test_same_host_location_and_content_location_are_invalidated():
    headers = {"location": "/items/42", "content-location": "http://API.example.com/items/42/v"}
    tags = targets(headers=headers, path="/items")
    assert "uri:api.example.com/items/42" in tags
    assert "uri:api.example.com/items/42/v" in tags


def test_relative_location_is_resolved_against_the_request_uri():
    assert "uri:api.example.com/a/c" in targets(path="/a/b", headers={"location": "c?x=1"})


def test_other_host_location_is_never_invalidated_section_4_4():
    tags = targets(headers={"location": "https://evil.example.net/items/1"})
    assert not any("evil" in t for t in tags)
    assert targets(headers={"location": "//other.example.com/x"}) == (
        "uri:api.example.com/items",
        "catalog",
    )


def test_path_tag_ignores_query_and_normalises_the_path():
    assert uri_tag("API.example.com", "/a/./b/%7Ex", C) == "uri:api.example.com/a/b/~x"
    c = parse_config({"ignore_uri_case": True})
    assert uri_tag(HOST, "/Items", c) == uri_tag(HOST, "/items", c)


def test_long_or_non_ascii_path_tags_are_hashed_to_fit_the_sidecar():
    for path in ("/" + "a" * 300, "/caf\u00e9", "/a b"):
        tag = uri_tag(HOST, path, C)
        assert tag.startswith("uri#")
        assert len(tag) == 4 + 64
    assert uri_tag(HOST, "/caf\u00e9", C) != uri_tag(HOST, "/cafe", C)


def test_header_tags_surrogate_key_is_space_separated_cache_tag_comma_separated():
    headers = {"surrogate-key": "a  b\tc", "cache-tag": "d, e f ,,g"}
    assert header_tags(headers, C) == ["a", "b", "c", "d", "e f", "g"]


def test_write_response_tags_are_invalidated():
    tags = targets(headers={"surrogate-key": "product-42 list"})
    assert {"product-42", "list"} <= set(tags)


def test_entry_tags_for_a_stored_response():
    t = entry_tags(HOST, "/items", {"cache-tag": "x,y", "surrogate-key": "x"}, C)
    assert t.tags == ("uri:api.example.com/items", "catalog", "x", "y")
    assert t.dropped == ()
    off = parse_config({"invalidate_on_write": False})
    assert entry_tags(HOST, "/items", {}, off).tags == ()


def test_unusable_tags_are_reported_so_the_entry_is_not_stored():
    many = " ".join(f"t{i}" for i in range(MAX_TAGS + 5))
    t = entry_tags(
        HOST, "/items", {"surrogate-key": many, "cache-tag": "caf\u00e9, " + "x" * 300}, C
    )
    assert len(t.tags) == MAX_TAGS
    assert "caf\u00e9" in t.dropped
    assert "x" * 300 in t.dropped
    assert len(t.dropped) == 2 + 7  # path tag + catalog took two of the 256 slots

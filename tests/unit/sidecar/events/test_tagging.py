"""The tag scheme: normalisation as the cache key does it, the tags an entry is stamped
with, and that an event's URL or prefix reaches exactly the entries it names (never
fewer; more only past the depth cap)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kong_plugin import cache_key, query_key
from sidecar.events.tagging import (
    MAX_TAG_CHARS,
    PREFIX_DEPTH,
    canonical_query,
    entry_tags,
    flush_tags,
    normalize_escapes,
    normalize_path,
    path_tags,
    prefix_event_tags,
    url_event_tags,
    url_tag,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).with_name("tag_vectors.json")).read_text(encoding="utf-8")
)

_PATH_CHARS = st.sampled_from([*list("/aAbB.%2F7e~-"), "%41", "%7e", "%2f", "..", "é"])
_PATHS = st.lists(_PATH_CHARS, max_size=24).map(lambda parts: "/" + "".join(parts))


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


@pytest.mark.parametrize("case", VECTORS["urls"], ids=lambda c: c["url"][:40])
def test_url_event_vectors(case: dict[str, Any]) -> None:
    assert list(url_event_tags(case["url"])) == case["tags"]


@pytest.mark.parametrize("case", VECTORS["prefixes"], ids=lambda c: c["prefix"][:40])
def test_prefix_event_vectors(case: dict[str, Any]) -> None:
    assert list(prefix_event_tags(case["prefix"])) == case["tags"]


@settings(max_examples=500, deadline=None)
@given(_PATHS, st.booleans())
def test_paths_are_normalised_as_the_cache_key_does(path: str, fold: bool) -> None:
    assert normalize_path(path, fold_case=fold) == cache_key.normalize_path(path, ignore_case=fold)


@settings(max_examples=300, deadline=None)
@given(st.text(st.sampled_from(list("%aF0e7zZ2")), max_size=12))
def test_escapes_are_normalised_as_the_cache_key_does(text: str) -> None:
    assert normalize_escapes(text) == query_key.normalize_escapes(text)


def test_the_query_is_canonical_but_never_decoded() -> None:
    assert canonical_query("b=2&a=1") == canonical_query("a=1&b=2") == "a=1&b=2"
    assert canonical_query("&a=1&&") == "a=1"
    assert canonical_query("") == ""
    assert canonical_query("x=%7e%2f") == "x=~%2F"
    assert canonical_query("q=a+b") != canonical_query("q=a%20b")
    assert canonical_query("a=1;b=2") == "a=1;b=2"


def test_url_tags_ignore_host_and_consumer_and_keep_the_query() -> None:
    assert url_tag("/products/42") == "url:/products/42"
    assert url_tag("/products/42", "") == url_tag("/products/42", "&")
    assert url_tag("/products/42", "lang=en") == "url:/products/42?lang=en"
    assert url_tag("/products/%34%32") == url_tag("/products/42")
    assert url_tag("/Products/42") != url_tag("/products/42")
    assert url_tag("/Products/42", fold_case=True) == url_tag("/products/42")


def test_long_or_non_ascii_targets_become_digests() -> None:
    long_tag = url_tag("/" + "x" * MAX_TAG_CHARS)
    assert long_tag.startswith("url#") and len(long_tag) == 4 + 64
    assert url_tag("/caf\u00e9").startswith("url#")
    assert url_tag("/" + "x" * (MAX_TAG_CHARS - 5)).startswith("url:/")
    assert all(len(t) <= MAX_TAG_CHARS for t in path_tags("/" + "y/" * 200))


def test_path_tags_are_the_segment_boundaries_up_to_the_cap() -> None:
    assert path_tags("/products/42") == ("path:/", "path:/products/", "path:/products/42")
    assert path_tags("/products/") == ("path:/", "path:/products/")
    deep = "/" + "/".join("s" * 30)
    assert len(path_tags(deep)) == PREFIX_DEPTH + 1
    assert all(len(entry_tags("/" + "a/" * n + "b")) <= PREFIX_DEPTH + 3 for n in range(30))


def test_flush_names_a_route_or_a_service() -> None:
    assert flush_tags("catalog") == ("route-name:catalog", "service:catalog")


def _matches(path: str, prefix: str) -> bool:
    """Does `prefix` name `path` (both normalised) at a segment boundary?"""
    if prefix.endswith("/"):
        return path.startswith(prefix)
    return path == prefix or path.startswith(prefix + "/")


def _slashes_ok(prefix: str) -> bool:
    """Is `prefix` within the depth cap (so matched exactly)?"""
    base = prefix if prefix.endswith("/") else prefix + "/"
    return base.count("/") <= PREFIX_DEPTH + 1


_SEGMENTS = st.lists(st.sampled_from(["a", "b", "A", "ab", ""]), min_size=0, max_size=12)


@settings(max_examples=1000, deadline=None)
@given(_SEGMENTS, _SEGMENTS, st.booleans(), st.booleans())
def test_a_prefix_reaches_every_entry_under_it_and_only_those(
    path_parts: list[str], prefix_parts: list[str], fold: bool, slash: bool
) -> None:
    path = "/" + "/".join(path_parts)
    prefix = "/" + "/".join(prefix_parts) + ("/" if slash and prefix_parts else "")
    stamped = set(path_tags(path, fold_case=fold))
    purged = set(prefix_event_tags(prefix))
    stored = normalize_path(path, fold_case=fold)
    named = _matches(stored, prefix) or _matches(stored, prefix.lower())
    if named:
        assert stamped & purged, (stored, prefix)
    elif _slashes_ok(prefix):
        assert not stamped & purged, (stored, prefix)


@settings(max_examples=500, deadline=None)
@given(_PATHS, st.sampled_from(["", "a=1", "b=2&a=1", "a=%7e"]), st.booleans())
def test_a_url_reaches_the_entries_of_that_url_on_any_route(
    path: str, query: str, fold: bool
) -> None:
    stamped = set(entry_tags(path, query, fold_case=fold))
    url = path + ("?" + query if query else "")
    assert stamped & set(url_event_tags(url))
    # Written in another case, it still reaches the entries of a case-folding route.
    shouted = path.upper() + ("?" + query if query else "")
    if fold:
        assert stamped & set(url_event_tags(shouted))


def test_a_url_does_not_reach_another_query_or_path() -> None:
    stamped = set(entry_tags("/products/42", "lang=en"))
    assert not stamped & set(url_event_tags("/products/42"))
    assert not stamped & set(url_event_tags("/products/42?lang=fr"))
    assert not stamped & set(url_event_tags("/products/4?lang=en"))
    assert stamped & set(url_event_tags("/products/42?lang=en&"))

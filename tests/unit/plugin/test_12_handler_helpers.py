"""Pure helpers of the handler: request line, query decoding, header lines."""

from __future__ import annotations

import pytest

from kong_plugin.handler import PdkError, header_lines, parse_query, parse_request_line, pdk


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("GET /products/1?x=1 HTTP/1.1", ("GET", "/products/1?x=1")),
        ("HEAD / HTTP/1.0", ("HEAD", "/")),
        ("GET http://example.com/a/b?c HTTP/1.1", ("GET", "/a/b?c")),
        ("GET https://example.com HTTP/1.1", ("GET", "/")),
        ("GET /no-version", ("GET", "/no-version")),
    ],
)
def test_request_line(line: str, expected: tuple[str, str]) -> None:
    assert parse_request_line(line) == expected


def test_query_decoding_matches_kong() -> None:
    assert parse_query("a=1&b&c=&a=2&d=x+y%21") == {
        "a": ["1", "2"],
        "b": True,
        "c": "",
        "d": "x y!",
    }
    assert parse_query("") == {}


def test_header_lines_keep_repeats_in_order() -> None:
    assert header_lines({"a": ["1", "2"], "b": "3"}) == [(b"a", b"1"), (b"a", b"2"), (b"b", b"3")]


def test_pdk_unwraps_lua_style_results() -> None:
    assert pdk(("v", None)) == "v"
    with pytest.raises(PdkError, match="boom"):
        pdk((None, "boom"))

"""The handler's PDK glue and pure helpers: request line, header lines, upstream headers."""

from __future__ import annotations

from typing import Any

import pytest

from kong_plugin.headers import MAX_HEADER_LINES, header_lines, kong_line_count
from kong_plugin.pdk import PdkError, parse_request_line, pdk, upstream_headers


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


def test_header_lines_keep_repeats_in_order() -> None:
    assert header_lines({"a": ["1", "2"], "b": "3"}) == [(b"a", b"1"), (b"a", b"2"), (b"b", b"3")]


def test_pdk_unwraps_lua_style_results() -> None:
    assert pdk(("v", None)) == "v"
    with pytest.raises(PdkError, match="boom"):
        pdk((None, "boom"))


class _Ns:
    def __init__(self, **calls: Any) -> None:
        for name, value in calls.items():
            setattr(self, name, value)


def _kong(buffered: Any, response_headers: Any) -> Any:
    return _Ns(
        nginx=_Ns(get_ctx=lambda key: (buffered if key == "buffered_headers" else None, None)),
        response=_Ns(get_headers=lambda limit: (response_headers, None)),
    )


def test_upstream_headers_come_from_kongs_buffered_response_when_it_has_them() -> None:
    buffered = {"Content-Type": "text/plain", "X-Up": ["1", "2"]}
    assert upstream_headers(_kong(buffered, {"x-plugin": "p"})) == (buffered, True)


def test_upstream_headers_fall_back_to_the_response_and_say_when_cut_short() -> None:
    few = {"content-type": "text/plain"}
    assert upstream_headers(_kong(None, few)) == (few, True)
    assert upstream_headers(_kong([], few)) == (few, True)  # an empty Lua table
    many = {f"x-{i}": "v" for i in range(MAX_HEADER_LINES - 1)} | {"set-cookie": ["a", "b"]}
    assert kong_line_count(many) == MAX_HEADER_LINES + 1
    assert upstream_headers(_kong(None, many)) == (many, False)

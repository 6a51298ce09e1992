"""Ending a request with a stored response: framing and the headers a response-phase exit
must clear (kong/pdk/response.lua send)."""

from __future__ import annotations

import pytest

from kong_plugin.exits import framing, header_names, response_phase_exit


@pytest.mark.parametrize("status", [304, 204, 100])
def test_no_content_statuses_send_no_content_length(status: int) -> None:
    # Kong would otherwise add Content-Length: 0 for the empty body
    assert framing("GET", status, b"stored body") == (b"", {"content-length": []})


def test_head_gets_the_stored_length_and_no_body() -> None:
    assert framing("HEAD", 200, b"12345") == (b"", {"content-length": "5"})


def test_get_sends_the_body_and_lets_kong_count_it() -> None:
    assert framing("GET", 200, b"12345") == (b"12345", {})
    assert framing("GET", 200, b"") == (b"", {})  # a stored empty 200 is Content-Length: 0


def test_response_phase_exit_clears_what_the_stored_response_does_not_set() -> None:
    out = {"content-type": "text/plain", "ETag": '"v1"'}
    current = ["content-type", "content-encoding", "set-cookie", "etag", "x-error"]
    merged = response_phase_exit(out, current)
    assert merged["content-type"] == "text/plain" and merged["ETag"] == '"v1"'
    assert merged["content-encoding"] == [] and merged["set-cookie"] == []
    assert merged["x-error"] == []
    assert "etag" not in merged  # set by the stored response under another spelling


def test_response_phase_exit_leaves_kong_managed_names_alone() -> None:
    merged = response_phase_exit({}, ["content-length", "transfer-encoding", "connection"])
    assert merged == {}


def test_header_names_lower_cases() -> None:
    assert header_names({"X-A": "1", "b": ["2"]}) == ["x-a", "b"]
    assert header_names(None) == []

"""Each check of sidecar/core/limits.py: its boundary, its field, its message, its reason."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sidecar.core.errors import InvalidRequestError
from sidecar.core.limits import (
    Limits,
    check_coalesce_wait,
    check_entry,
    check_headers,
    check_key,
    check_tag,
)
from sidecar.core.model import CachedResponse

LIMITS = Limits(max_key_bytes=8, max_body_bytes=10, max_headers=2, max_header_bytes=12)
GOOD = CachedResponse(200, ((b"a", b"1"),), b"body", 1, 1_000, tags=("t",), vary=("accept",))


def refused(call: object, *args: object) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as info:
        call(*args)  # type: ignore[operator]
    return info.value


def test_key_bounds() -> None:
    assert check_key(b"k" * 8, LIMITS) == "k" * 8
    assert check_key("é".encode(), LIMITS) == "é"
    e = refused(check_key, b"", LIMITS)
    assert (e.field, e.reason, e.message) == ("key", "empty_key", "must not be empty")
    e = refused(check_key, b"k" * 9, LIMITS)
    assert e.reason == "key_too_long" and e.message == "is 9 bytes, longer than the 8 allowed"
    e = refused(check_key, b"ab\xc3\x28", LIMITS)
    assert e.reason == "key_not_utf8" and "bad byte at offset 2" in e.message
    for control in (b"a\x00", b"a\n", b"a\x1f", b"a\x7f"):
        assert refused(check_key, control, LIMITS).reason == "key_control_chars"
    assert refused(check_key, b"", LIMITS, "prefix").field == "prefix"


def test_header_bounds() -> None:
    check_headers(((b"a", b"12345"), (b"b", b"12345")), LIMITS, "h")  # 12 bytes: at the limit
    e = refused(check_headers, ((b"a", b"1"),) * 3, LIMITS, "h")
    assert (e.field, e.reason) == ("h", "too_many_headers")
    assert e.message == "more than 2 header lines"
    e = refused(check_headers, ((b"a", b"1"), (b"b c", b"1")), LIMITS, "h")
    assert (e.field, e.reason) == ("h[1].name", "bad_header_name")
    for value in (b"a\x00", b"a\r", b"a\nb"):
        e = refused(check_headers, ((b"a", value),), LIMITS, "h")
        assert (e.field, e.reason) == ("h[0].value", "bad_header_value")
    e = refused(check_headers, ((b"a", b"12345"), (b"b", b"123456")), LIMITS, "h")  # 13
    assert e.reason == "headers_too_large" and "exceed 12 bytes" in e.message


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"format_version": 2}, "entry.format_version", "bad_format_version"),
        ({"status": 99}, "entry.status", "bad_status"),
        ({"status": 600}, "entry.status", "bad_status"),
        ({"body": b"x" * 11}, "entry.body", "body_too_large"),
        ({"headers": ((b"bad name", b""),)}, "entry.headers[0].name", "bad_header_name"),
        ({"stored_at_ms": -1}, "entry.stored_at_ms", "bad_stored_at"),
        ({"ttl_ms": -1}, "entry.ttl_ms", "negative_ttl"),
        ({"stale_while_revalidate_ms": -1}, "entry.stale_while_revalidate_ms", "negative_ttl"),
        ({"stale_if_error_ms": -1}, "entry.stale_if_error_ms", "negative_ttl"),
        ({"storage_ttl_ms": -1}, "entry.storage_ttl_ms", "negative_ttl"),
        ({"tags": ("t",) * 257}, "entry.tags", "too_many_tags"),
        ({"tags": ("ok", "has space")}, "entry.tags[1]", "bad_tag"),
        ({"vary": ("Accept",)}, "entry.vary[0]", "bad_vary"),
        ({"vary": ("",)}, "entry.vary[0]", "bad_vary"),
    ],
)
def test_entry_checks_name_the_field(change: dict[str, object], field: str, reason: str) -> None:
    e = refused(check_entry, replace(GOOD, **change), LIMITS)  # type: ignore[arg-type]
    assert (e.field, e.reason) == (field, reason)
    assert str(e).startswith(f"{field}: ")


def test_entry_boundaries_pass() -> None:
    check_entry(GOOD, LIMITS)
    for status in (100, 599):
        check_entry(replace(GOOD, status=status), LIMITS)
    check_entry(replace(GOOD, body=b"x" * 10, ttl_ms=0), LIMITS)  # at the body limit
    check_entry(replace(GOOD, tags=("t",) * 256), LIMITS)  # at the tag count limit
    huge = replace(GOOD, ttl_ms=10 * LIMITS.max_ttl_ms)
    check_entry(huge, LIMITS)  # beyond max_ttl_ms: clamped later, not refused


def test_tag_bounds() -> None:
    check_tag("x" * 256, Limits())
    check_tag("!~", Limits())
    e = refused(check_tag, "x" * 257, Limits())
    assert (e.field, e.reason) == ("tag", "tag_too_long")
    for bad in ("", "a b", "é", "a\tb"):
        e = refused(check_tag, bad, Limits())
        assert e.reason == "bad_tag" and "printable ASCII" in e.message
    assert refused(check_tag, "", Limits(), "route").field == "route"


def test_coalesce_wait_is_capped_not_refused() -> None:
    limits = Limits(max_coalesce_wait_ms=100)
    assert check_coalesce_wait(50, limits) == 50
    assert check_coalesce_wait(100, limits) == 100
    assert check_coalesce_wait(10_000, limits) == 100

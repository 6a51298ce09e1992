"""Checks on what clients send, against the configured limits. Pure functions.

Each check raises `InvalidRequestError` naming the field and what is wrong with it; the
`reason` label is stable (used as a metric label). These checks do not judge HTTP
semantics (cacheability is the plugin's business), only that a request is well-formed and
within bounds; what a store claims about time (stored_at, durations beyond `max_ttl_ms`)
is clamped instead, by `sidecar.engine.entry_bounds`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from sidecar.core.errors import InvalidRequestError
from sidecar.core.model import FORMAT_VERSION, CachedResponse

_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE = re.compile(rb"[\x00\r\n]")
_TAG = re.compile(r"^[\x21-\x7e]+$")
#: C0 controls and DEL (UTF-8 never uses these bytes inside multi-byte sequences).
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Limits:
    max_key_bytes: int = 2048
    max_body_bytes: int = 8 * 1024**2
    max_headers: int = 256
    max_header_bytes: int = 64 * 1024
    max_ttl_ms: int = 365 * 24 * 3600 * 1000
    max_tags: int = 256
    max_tag_bytes: int = 256
    max_coalesce_wait_ms: int = 5000


def check_key(key: bytes, limits: Limits, field: str = "key") -> str:
    """A key is 1..max_key_bytes of UTF-8 without control characters. Returns it decoded."""
    if not key:
        raise InvalidRequestError(field, "must not be empty", "empty_key")
    if len(key) > limits.max_key_bytes:
        raise InvalidRequestError(
            field,
            f"is {len(key)} bytes, longer than the {limits.max_key_bytes} allowed",
            "key_too_long",
        )
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(
            field, f"is not valid UTF-8 (bad byte at offset {exc.start})", "key_not_utf8"
        ) from exc
    if _CONTROL.search(key):
        raise InvalidRequestError(field, "contains control characters", "key_control_chars")
    return text


def check_headers(headers: Iterable[tuple[bytes, bytes]], limits: Limits, field: str) -> None:
    """Header names are RFC 9110 tokens; values carry no NUL, CR or LF; counts are bounded."""
    total = 0
    for i, (name, value) in enumerate(headers):
        if i >= limits.max_headers:
            raise InvalidRequestError(
                field, f"more than {limits.max_headers} header lines", "too_many_headers"
            )
        if not _TOKEN.match(name):
            raise InvalidRequestError(
                f"{field}[{i}].name",
                f"{name[:40]!r} is not a valid header name (RFC 9110 token)",
                "bad_header_name",
            )
        if _BAD_VALUE.search(value):
            raise InvalidRequestError(
                f"{field}[{i}].value",
                "contains NUL, CR or LF (not allowed in a header value)",
                "bad_header_value",
            )
        total += len(name) + len(value)
        if total > limits.max_header_bytes:
            raise InvalidRequestError(
                field,
                f"header names and values exceed {limits.max_header_bytes} bytes",
                "headers_too_large",
            )


def _check_duration(value: int, field: str) -> None:
    """Durations are not negative. Beyond `max_ttl_ms` they are clamped, not refused
    (`sidecar.engine.entry_bounds`)."""
    if value < 0:
        raise InvalidRequestError(field, f"must not be negative (got {value})", "negative_ttl")


def check_entry(entry: CachedResponse, limits: Limits, field: str = "entry") -> None:
    """Every field of a stored entry, see the proto for their meaning."""
    if entry.format_version != FORMAT_VERSION:
        raise InvalidRequestError(
            f"{field}.format_version",
            f"unsupported format {entry.format_version} (this sidecar writes "
            f"{FORMAT_VERSION}; 0 means the current one)",
            "bad_format_version",
        )
    if not 100 <= entry.status <= 599:
        raise InvalidRequestError(
            f"{field}.status", f"{entry.status} is not an HTTP status code", "bad_status"
        )
    if len(entry.body) > limits.max_body_bytes:
        raise InvalidRequestError(
            f"{field}.body",
            f"is {len(entry.body)} bytes, larger than the {limits.max_body_bytes} allowed",
            "body_too_large",
        )
    check_headers(entry.headers, limits, f"{field}.headers")
    if entry.stored_at_ms < 0:
        raise InvalidRequestError(f"{field}.stored_at_ms", "must not be negative", "bad_stored_at")
    _check_duration(entry.ttl_ms, f"{field}.ttl_ms")
    _check_duration(entry.stale_while_revalidate_ms, f"{field}.stale_while_revalidate_ms")
    _check_duration(entry.stale_if_error_ms, f"{field}.stale_if_error_ms")
    _check_duration(entry.storage_ttl_ms, f"{field}.storage_ttl_ms")
    if len(entry.tags) > limits.max_tags:
        raise InvalidRequestError(
            f"{field}.tags", f"more than {limits.max_tags} tags", "too_many_tags"
        )
    for i, tag in enumerate(entry.tags):
        check_tag(tag, limits, f"{field}.tags[{i}]")
    for i, name in enumerate(entry.vary):
        if not name or not _TOKEN.match(name.encode("utf-8", "replace")) or name != name.lower():
            raise InvalidRequestError(
                f"{field}.vary[{i}]",
                f"{name[:40]!r} is not a lower-case header name",
                "bad_vary",
            )


def check_tag(tag: str, limits: Limits, field: str = "tag") -> None:
    if not tag or not _TAG.match(tag):
        raise InvalidRequestError(
            field, "must be non-empty printable ASCII without spaces", "bad_tag"
        )
    if len(tag) > limits.max_tag_bytes:
        raise InvalidRequestError(
            field, f"is longer than {limits.max_tag_bytes} bytes", "tag_too_long"
        )


def check_coalesce_wait(wait_ms: int, limits: Limits) -> int:
    """The wait actually applied: the request's, capped by the configured maximum."""
    return min(wait_ms, limits.max_coalesce_wait_ms)

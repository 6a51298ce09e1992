"""Media types for the ``content_type`` setting, matched the way Kong >= 3.2 does.

Kong's proxy-cache (since #10209) parses both the configured value and the response's
``Content-Type``: ``type/subtype`` tokens compared case-insensitively, ``*`` allowed as
type and/or subtype in the configured value (a bare ``*`` means ``*/*``), and parameters
must match exactly -- the same names with the same values and the same number of them.
So ``application/json`` does NOT match ``application/json; charset=utf-8``; list both.

One deliberate difference: a ``charset`` parameter value is compared case-insensitively
(RFC 9110 §8.3.2: charset names are case-insensitive), so ``charset=UTF-8`` matches
``charset=utf-8``. Other parameter values are compared exactly, after unquoting.

``*/*`` (or ``*``) without parameters is the whole media range (RFC 9110 §12.5.1): it
matches any response, whatever its ``Content-Type`` -- malformed, missing or repeated
(`content_types_match`). Other ranges keep Kong's rules: a response with no
``Content-Type``, a malformed one or several lines never matches (as in Kong).

Not guaranteed: suffix matching (``application/*+json``) is not supported: ``*`` is a
whole token.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TYPE_RE = re.compile(rf"[ \t]*({_TOKEN})/({_TOKEN})[ \t]*")
_PARAM_RE = re.compile(rf';[ \t]*(?:({_TOKEN})=({_TOKEN}|"(?:[^"\\]|\\.)*"))?[ \t]*')
_UNESCAPE_RE = re.compile(r"\\(.)")


@dataclass(frozen=True, slots=True)
class MediaType:
    """A parsed media type: lower-case type and subtype, sorted (name, value) parameters."""

    type: str
    subtype: str
    params: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        params = "".join(f"; {k}={v}" for k, v in self.params)
        return f"{self.type}/{self.subtype}{params}"


@dataclass(frozen=True, slots=True)
class MediaRange:
    """A configured ``content_type`` entry; `matches` implements Kong's rule."""

    type: str
    subtype: str
    params: tuple[tuple[str, str], ...] = ()

    @property
    def universal(self) -> bool:
        """``*/*`` with no parameters: every response matches, Content-Type or not."""
        return self.type == "*" and self.subtype == "*" and not self.params

    def matches(self, media_type: MediaType) -> bool:
        """True if `media_type` falls in this range (wildcards, exact parameters)."""
        return (
            self.type in ("*", media_type.type)
            and self.subtype in ("*", media_type.subtype)
            and self.params == media_type.params
        )


def parse_media_type(value: str) -> MediaType | None:
    """Parse a ``Content-Type`` value; None if it is not ``type/subtype *(; param)``."""
    return _parse_memo(value) if len(value) <= 128 else _parse(value)


def _parse(value: str) -> MediaType | None:
    if value.strip() == "*":
        return MediaType("*", "*", ())
    m = _TYPE_RE.match(value)
    if m is None:
        return None
    params: dict[str, str] = {}
    pos = m.end()
    end = len(value)
    while pos < end:
        p = _PARAM_RE.match(value, pos)
        if p is None:
            return None
        pos = p.end()
        name, raw = p.group(1), p.group(2)
        if name is None:  # an empty parameter (";;"), tolerated
            continue
        name = name.lower()
        if raw.startswith('"'):
            raw = _UNESCAPE_RE.sub(r"\1", raw[1:-1])
        if name == "charset":
            raw = raw.lower()
        params[name] = raw  # a repeated name: last one wins, as in Kong
    return MediaType(m.group(1).lower(), m.group(2).lower(), tuple(sorted(params.items())))


_parse_memo = lru_cache(maxsize=256)(_parse)


def parse_media_range(value: str) -> MediaRange | None:
    """Parse a configured ``content_type`` entry; None if invalid."""
    parsed = parse_media_type(value)
    if parsed is None:
        return None
    return MediaRange(parsed.type, parsed.subtype, parsed.params)


def content_type_matches(value: str | None, ranges: tuple[MediaRange, ...]) -> bool:
    """True if the response ``Content-Type`` `value` matches any configured range."""
    if not value:
        return False
    parsed = parse_media_type(value)
    if parsed is None:
        return False
    return any(r.matches(parsed) for r in ranges)


def content_types_match(values: Sequence[str], ranges: tuple[MediaRange, ...]) -> bool:
    """True if a response whose ``Content-Type`` lines are `values` may be stored under
    `ranges`: always with a universal ``*/*``; else exactly one line that matches."""
    if any(r.universal for r in ranges):
        return True
    return len(values) == 1 and content_type_matches(values[0], ranges)

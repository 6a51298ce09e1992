"""What the client is told about the cache: ``X-Cache-Status`` (Kong's values), RFC 9211
``Cache-Status``, and ``Age`` (RFC 9111 §5.1).

``X-Cache-Status`` values (Kong's four, plus Strata's ``Stale``):

=========  ==========================================================================
Hit        served from the cache without contacting the upstream (also a 304 answered
           from a fresh entry)
Miss       nothing usable was stored; the request went upstream (the response may or
           may not be stored -- Kong marks the non-storable case Bypass, see below)
Bypass     the cache was not used: request not cacheable (method, Range, request
           ``no-store`` miss ...), response not storable (status, content type,
           ``private`` ...), or the sidecar failed and the request failed open
Refresh    an entry existed but could not be used as is (expired, request ``no-cache``
           or ``max-age``): the upstream was asked -- conditionally when possible -- and
           the entry replaced or revalidated
Stale      a stale entry was served: within ``stale-while-revalidate`` (refreshed in the
           background), a client's ``max-stale``, or ``stale-if-error`` (upstream down)
=========  ==========================================================================

``Cache-Status`` examples (`cache_status_value`)::

    strata; hit; ttl=42
    strata; fwd=uri-miss; stored
    strata; fwd=uri-miss; collapsed; stored
    strata; fwd=stale; fwd-status=304; stored
    strata; hit; ttl=-5; detail=stale-while-revalidate
    strata; hit; ttl=-90; detail=stale-if-error
    strata; fwd=bypass; detail=range
    strata; fwd=request; detail=request-no-cache

Not guaranteed: ``key`` and ``detail`` strings are reduced to printable ASCII (other
characters become ``?``); values are not checked against one another (e.g. ``hit`` with
``fwd``).
"""

from __future__ import annotations

import enum
import re
from typing import Literal

from kong_plugin.cache_control import DELTA_MAX

Fwd = Literal["bypass", "method", "uri-miss", "vary-miss", "miss", "request", "stale", "partial"]

_SF_TOKEN_RE = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_NON_PRINTABLE_RE = re.compile(r"[^\x20-\x7e]")


class XCacheStatus(enum.Enum):
    """Kong proxy-cache's ``X-Cache-Status`` values plus ``Stale`` (module docstring)."""

    HIT = "Hit"
    MISS = "Miss"
    BYPASS = "Bypass"
    REFRESH = "Refresh"
    STALE = "Stale"


def sf_string(value: str) -> str:
    """An RFC 8941 sf-string: quoted, with ``\\`` and ``"`` escaped."""
    value = _NON_PRINTABLE_RE.sub("?", value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _token_or_string(value: str) -> str:
    return value if _SF_TOKEN_RE.fullmatch(value) else sf_string(value)


def cache_status_value(
    name: str,
    *,
    hit: bool = False,
    fwd: Fwd | None = None,
    fwd_status: int | None = None,
    ttl: int | None = None,
    stored: bool = False,
    collapsed: bool = False,
    key: str | None = None,
    detail: str | None = None,
) -> str:
    """One RFC 9211 list member: ``name`` then parameters in the RFC's order."""
    parts = [name]
    if hit:
        parts.append("hit")
    if fwd is not None:
        parts.append(f"fwd={fwd}")
    if fwd_status is not None:
        parts.append(f"fwd-status={int(fwd_status)}")
    if ttl is not None:
        parts.append(f"ttl={int(ttl)}")
    if stored:
        parts.append("stored")
    if collapsed:
        parts.append("collapsed")
    if key is not None:
        parts.append(f"key={sf_string(key)}")
    if detail:
        parts.append(f"detail={_token_or_string(detail)}")
    return "; ".join(parts)


def append_cache_status(existing: str | None, member: str) -> str:
    """Add this cache's member after those of caches nearer the origin (RFC 9211 §2)."""
    existing = (existing or "").strip().rstrip(",")
    return f"{existing}, {member}" if existing else member


def age_value(age_seconds: float) -> str:
    """The ``Age`` field value: whole non-negative seconds, capped at 2^31 (§5.1, §1.2.2)."""
    return str(int(min(max(age_seconds, 0), DELTA_MAX)))

"""Response ``Vary`` (RFC 9110 §12.5.5, RFC 9111 §4.1): which request headers select a
stored variant.

`parse_vary` turns the response field into lower-cased, de-duplicated, sorted names (the
proto's ``Entry.vary``) and flags ``*``: a response with ``Vary: *`` always fails to match
(§4.1), so it is not stored at all (see `cacheability`). `secondary_key_parts` gives the
request's normalised values for those names, the way the sidecar selects a variant
(``sidecar/engine/variants.py``): each field line's whitespace runs collapsed to one space and
trimmed, lines joined with ``", "``, an absent header distinct from an empty one.

Not guaranteed: values are not otherwise normalised -- ``gzip,deflate`` and
``gzip, deflate`` are different variants, and value case is significant (RFC 9111 §4.1
allows a cache to normalise more, but is not required to).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from kong_plugin.cache_key import normalize_header_value
from kong_plugin.headers import HeaderInput, Headers

_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True, slots=True)
class VarySpec:
    """The request header names a response varies on."""

    names: tuple[str, ...] = ()
    star: bool = False

    @property
    def varies(self) -> bool:
        return self.star or bool(self.names)


NO_VARY = VarySpec()


def _parse(value: str) -> VarySpec:
    names: set[str] = set()
    star = False
    for raw in value.split(","):
        item = raw.strip()
        if item == "*":
            star = True
        elif item and _TOKEN_RE.fullmatch(item):
            names.add(item.lower())
    return VarySpec(tuple(sorted(names)), star)


def parse_vary(value: str | Sequence[str] | None) -> VarySpec:
    """Parse one or more ``Vary`` lines. Invalid names are skipped; never raises."""
    if not value:
        return NO_VARY
    if not isinstance(value, str):
        value = ",".join(v for v in value if isinstance(v, str))
    return _parse_memo(value) if len(value) <= 128 else _parse(value)


_parse_memo = lru_cache(maxsize=256)(_parse)


def response_vary(headers: HeaderInput) -> VarySpec:
    """`parse_vary` of a response's ``Vary`` lines."""
    return parse_vary(Headers.of(headers).get_all("vary"))


def secondary_key_parts(
    vary_names: Sequence[str], request_headers: HeaderInput
) -> tuple[tuple[str, str | None], ...]:
    """(name, normalised value or None) for each of `vary_names`, in the given order."""
    h = Headers.of(request_headers)
    out = []
    for name in vary_names:
        lines = h.get_all(name)
        out.append((name.lower(), normalize_header_value(lines) if lines else None))
    return tuple(out)


def variant_matches(
    vary_names: Sequence[str], stored_request_headers: HeaderInput, request_headers: HeaderInput
) -> bool:
    """§4.1: a stored response is selected only if every varied header matches."""
    return secondary_key_parts(vary_names, stored_request_headers) == secondary_key_parts(
        vary_names, request_headers
    )

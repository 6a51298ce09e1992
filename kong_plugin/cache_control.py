"""``Cache-Control`` parsing (RFC 9111 §5.2; RFC 5861 extensions).

`parse_cache_control` takes the field as one string or as a list of field lines (Kong
gives a list when the line is repeated) and returns a `CacheControl`. It never raises.

Rules applied:

* directive names are case-insensitive; list elements are split on commas outside
  quoted strings, so ``no-cache="set-cookie, x-foo"`` is one directive;
* arguments may be a token or a quoted-string (``max-age="5"`` is accepted, with
  backslash escapes undone);
* delta-seconds (§1.2.2): only ASCII digits are valid; a value above 2^31 is capped at
  2147483648 (`DELTA_MAX`), never rejected, including values too long for `int()`;
  leading zeros are not significant (``max-age=000000000060`` is 60);
* an invalid or missing argument to a delta-seconds directive is *ignored*, and its name
  is recorded in `CacheControl.invalid` -- freshness treats an invalid ``max-age`` or
  ``s-maxage`` as "stale" (§4.2.1: "caches are encouraged to consider responses that have
  invalid freshness information ... to be stale");
* a directive given twice (§4.2.1 says "first, or consider stale"): Strata keeps the most
  restrictive value -- the smallest for ``max-age``, ``s-maxage``, ``max-stale``,
  ``stale-while-revalidate``, ``stale-if-error``, the largest for ``min-fresh``;
* ``no-cache``/``private`` with a field list (the qualified form) record the fields; if the
  unqualified form also appears, the unqualified one wins (more restrictive);
* ``max-stale`` without a value means "any staleness" and is stored as `DELTA_MAX`;
* unknown directives are ignored; ``Pragma`` is not consulted (deprecated, RFC 9111 §5.4).

Not guaranteed: the parser is lenient -- junk between commas is skipped, not reported.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

#: RFC 9111 §1.2.2: the value a cache uses for any delta-seconds it cannot represent.
DELTA_MAX = 2147483648

_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_ELEMENT_RE = re.compile(r'(?:[^,"]|"(?:[^"\\]|\\.)*"?)+')
_UNESCAPE_RE = re.compile(r"\\(.)")
_QUOTED_RE = re.compile(r'"(?:[^"\\]|\\.)*"')

_DELTA_MIN = {"max-age", "s-maxage", "max-stale", "stale-while-revalidate", "stale-if-error"}
_DELTA_MAX_WINS = {"min-fresh"}
_FLAGS = {
    "no-store": "no_store",
    "no-transform": "no_transform",
    "public": "public",
    "must-revalidate": "must_revalidate",
    "proxy-revalidate": "proxy_revalidate",
    "must-understand": "must_understand",
    "immutable": "immutable",
    "only-if-cached": "only_if_cached",
}


@dataclass(frozen=True, slots=True)
class CacheControl:
    """Parsed ``Cache-Control`` directives; absent delta directives are None."""

    max_age: int | None = None
    s_maxage: int | None = None
    max_stale: int | None = None
    min_fresh: int | None = None
    stale_while_revalidate: int | None = None
    stale_if_error: int | None = None
    no_cache: bool = False
    no_cache_fields: frozenset[str] = frozenset()
    no_store: bool = False
    no_transform: bool = False
    public: bool = False
    private: bool = False
    private_fields: frozenset[str] = frozenset()
    must_revalidate: bool = False
    proxy_revalidate: bool = False
    must_understand: bool = False
    immutable: bool = False
    only_if_cached: bool = False
    invalid: frozenset[str] = frozenset()
    #: Read from a targeted field (RFC 9213, `kong_plugin.targeted`), not ``Cache-Control``:
    #: ``Expires`` is then ignored too (§2.2).
    targeted: bool = False

    @property
    def has_explicit_freshness(self) -> bool:
        """``s-maxage`` or ``max-age`` present (valid or not)."""
        return (
            self.s_maxage is not None
            or self.max_age is not None
            or "s-maxage" in self.invalid
            or "max-age" in self.invalid
        )


#: No directives at all (also what request directives become when `cache_control` is off).
EMPTY = CacheControl()


def parse_delta_seconds(value: str) -> int | None:
    """A delta-seconds value (RFC 9111 §1.2.2), capped at `DELTA_MAX`; None if invalid.

    Leading zeros do not count towards the size (``000000000060`` is 60); a value longer
    than `int()` accepts is capped like any other value above 2^31.
    """
    if not value or not value.isascii() or not value.isdigit():
        return None
    significant = value.lstrip("0")
    if len(significant) > 10:
        return DELTA_MAX
    return min(int(significant or "0"), DELTA_MAX)


def _unquote(arg: str) -> str | None:
    if not arg.startswith('"'):
        return arg
    if not _QUOTED_RE.fullmatch(arg):
        return None  # unterminated or malformed quoted-string
    return _UNESCAPE_RE.sub(r"\1", arg[1:-1])


def _field_names(arg: str) -> frozenset[str]:
    return frozenset(
        name.lower() for name in (p.strip() for p in arg.split(",")) if _TOKEN_RE.fullmatch(name)
    )


def _elements(value: str) -> list[str]:
    if '"' not in value:
        return value.split(",")
    return _ELEMENT_RE.findall(value)


#: Values up to this length are memoised (they repeat across requests); longer ones --
#: typically hostile -- are parsed every time so the memo stays small.
MEMO_MAX_LEN = 256


def _parse(value: str) -> CacheControl:
    deltas: dict[str, int] = {}
    flags: dict[str, Any] = {}
    invalid: set[str] = set()
    qualified: dict[str, set[str]] = {}
    unqualified: set[str] = set()
    for element in _elements(value):
        name, eq, raw_arg = element.partition("=")
        name = name.strip().lower()
        if not name or not _TOKEN_RE.fullmatch(name):
            continue
        arg = _unquote(raw_arg.strip()) if eq else None
        if name in _DELTA_MIN or name in _DELTA_MAX_WINS:
            if name == "max-stale" and not eq:
                seconds: int | None = DELTA_MAX
            else:
                seconds = parse_delta_seconds(arg.strip()) if arg is not None else None
            if seconds is None:
                invalid.add(name)
                continue
            if name in deltas:
                pick = max if name in _DELTA_MAX_WINS else min
                seconds = pick(deltas[name], seconds)
            deltas[name] = seconds
        elif name in ("no-cache", "private"):
            if arg:
                qualified.setdefault(name, set()).update(_field_names(arg))
            else:
                unqualified.add(name)
        elif name in _FLAGS:
            flags[_FLAGS[name]] = True
    for name in ("no-cache", "private"):
        if name in unqualified or name in qualified:
            attr = name.replace("-", "_")
            flags[attr] = True
            if name not in unqualified:
                flags[f"{attr}_fields"] = frozenset(qualified[name])
    return CacheControl(
        max_age=deltas.get("max-age"),
        s_maxage=deltas.get("s-maxage"),
        max_stale=deltas.get("max-stale"),
        min_fresh=deltas.get("min-fresh"),
        stale_while_revalidate=deltas.get("stale-while-revalidate"),
        stale_if_error=deltas.get("stale-if-error"),
        invalid=frozenset(invalid),
        **flags,
    )


def parse_cache_control(value: str | Sequence[str] | None) -> CacheControl:
    """Parse one or more ``Cache-Control`` field lines. Never raises; `EMPTY` if absent."""
    if not value:
        return EMPTY
    if not isinstance(value, str):
        value = ",".join(v for v in value if isinstance(v, str))
        if not value:
            return EMPTY
    return _parse_memo(value) if len(value) <= MEMO_MAX_LEN else _parse(value)


_parse_memo = lru_cache(maxsize=512)(_parse)

"""Response ``Vary`` (RFC 9110 §12.5.5, RFC 9111 §4.1): which request headers select a
stored variant, and the request values they are compared by.

`parse_vary` turns the response field into lower-cased, de-duplicated, sorted names (the
proto's ``Entry.vary``) and flags ``*``: a response with ``Vary: *`` always fails to match
(§4.1), so it is not stored at all (see `cacheability`).

`vary_value` is a request header's value as variants (and the cache key's
``vary_headers``, `kong_plugin.cache_key`) compare it: each field line's whitespace runs
collapsed to one space and trimmed, lines joined with ``", "`` (what the sidecar does,
``sidecar/engine/variants.py``); an absent header is distinct from an empty one. For the
list fields of proactive negotiation -- ``Accept``, ``Accept-Charset``, ``Accept-Encoding``,
``Accept-Language`` (RFC 9110 §12.5.1-12.5.4) -- the value is then read as the list it is
and written canonically (`normalized_list`), as §4.1 allows ("normalizing both header
values in a way that is known to have identical semantics"): members lower-cased (media
types, codings, charsets and language tags are case-insensitive) and stripped of
whitespace, parameter names lower-cased, the weight ``q`` written as its value
(``q=1``/``q=1.0``/``Q=1.000`` are the default and dropped; ``q=0.50`` is ``q=0.5``),
members ordered by weight, highest first, exact duplicates dropped, joined with ``,``.
Members of equal weight keep their order in ``Accept``, ``Accept-Charset`` and
``Accept-Language`` -- origins commonly break ties by list order (RFC 9110 §12.4.2 lets a
recipient treat it as a preference; RFC 4647 lookup does) -- and are sorted by text in
``Accept-Encoding`` (`UNORDERED_FIELDS`), where the origin picks among the codings it has
by its own preference. So ``gzip, br`` and ``BR,gzip`` select the same variant, as do
``en;q=0.5, de`` and ``de, en;q=0.50``; ``fr, en`` and ``en, fr`` do not.
`sidecar_lines` applies it to the request header lines the sidecar selects variants by
(lookup and store alike; the request that goes upstream is not touched).

Not guaranteed: a list value is left as whitespace-collapsed text (so compared
exactly) when it is over `MAX_NORMALIZED` characters, holds a quoted string, or is not
valid (a member or parameter that is not a token, an invalid weight, a weight that is not
the last parameter); parameters other than ``q`` keep their order and value case; two
members that differ only in weight are both kept; ``Accept-Language`` ranges are not
matched by prefix (``en`` and ``en-us`` are different values). Other varied headers are
compared as whitespace-collapsed text, value case significant.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from kong_plugin.headers import HeaderInput, Headers

_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Request fields compared as lists (module docstring), lower-case.
LIST_FIELDS = frozenset({"accept", "accept-charset", "accept-encoding", "accept-language"})
_LIST_FIELD_BYTES = frozenset(name.encode("ascii") for name in LIST_FIELDS)
#: List fields whose members of equal weight carry no order (sorted by text).
UNORDERED_FIELDS = frozenset({"accept-encoding"})
#: A list value longer than this is compared as collapsed text, unparsed.
MAX_NORMALIZED = 4096
#: Values up to this length are memoised (a browser's ``Accept`` is about 150).
_MEMO_LEN = 512
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGITS = frozenset("0123456789")
_OWS = " \t"
_DEFAULT_WEIGHT = 1000


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


def collapse(values: Sequence[str]) -> str:
    """Field lines as the sidecar compares them: each line's whitespace runs collapsed to
    one space and trimmed, lines joined with ``", "`` (`kong_plugin.cache_key` writes the
    key's ``vary_headers`` the same way)."""
    return ", ".join(" ".join(v.split()) for v in values)


def _weight(text: str) -> int | None:
    """RFC 9110 §12.4.2 ``qvalue`` in thousandths, or None if invalid."""
    head, dot, fraction = text.partition(".")
    if head not in ("0", "1") or len(fraction) > 3 or not _DIGITS.issuperset(fraction):
        return None
    if dot and not fraction and head == "1":
        return _DEFAULT_WEIGHT  # "1." is a valid qvalue
    milli = int(head) * 1000 + int(fraction.ljust(3, "0") or "0")
    return milli if milli <= _DEFAULT_WEIGHT else None


def _weight_text(milli: int) -> str:
    return "0" if milli == 0 else "0." + f"{milli:03d}".rstrip("0")


def _member(name: str, text: str) -> tuple[int, str] | None:
    """(weight, canonical text) of one list member, or None if it is not valid."""
    value, *raw_params = text.split(";")
    value = value.strip(_OWS).lower()
    if not value or not _TCHAR.issuperset(value.replace("/", "")):
        return None
    if name == "accept" and value.count("/") != 1:
        return None  # a media range is type "/" subtype
    if name != "accept" and "/" in value:
        return None
    params = [p.strip(_OWS) for p in raw_params]
    params = [p for p in params if p]  # an empty parameter is allowed (§5.6.6)
    weight = _DEFAULT_WEIGHT
    kept = [value]
    for i, param in enumerate(params):
        p_name, equals, p_value = param.partition("=")
        p_name, p_value = p_name.rstrip(_OWS).lower(), p_value.lstrip(_OWS)
        if not equals or not p_name or not p_value:
            return None
        if not _TCHAR.issuperset(p_name) or not _TCHAR.issuperset(p_value):
            return None
        if p_name != "q":
            kept.append(f"{p_name}={p_value}")
            continue
        parsed = _weight(p_value)
        if parsed is None or i != len(params) - 1:
            return None  # the weight is the last parameter (§12.5.1)
        weight = parsed
    if weight != _DEFAULT_WEIGHT:
        kept.append("q=" + _weight_text(weight))
    return weight, ";".join(kept)


def _normalized_list(name: str, value: str) -> str | None:
    if '"' in value:
        return None  # a quoted string may hold "," or ";": not split here
    members = []
    for item in value.split(","):
        if item.strip(_OWS):  # empty list elements are allowed (§5.6.1)
            member = _member(name, item)
            if member is None:
                return None
            members.append(member)
    if name in UNORDERED_FIELDS:
        members.sort(key=lambda m: (-m[0], m[1]))
    else:  # stable: members of equal weight keep their order
        members.sort(key=lambda m: -m[0])
    return ",".join(dict.fromkeys(text for _, text in members))


_normalized_memo = lru_cache(maxsize=1024)(_normalized_list)


def normalized_list(name: str, values: Sequence[str]) -> str | None:
    """The canonical form of a list field's lines (module docstring), or None when
    `name` is not one of `LIST_FIELDS` or the value is left as collapsed text."""
    name = name.lower()
    if name not in LIST_FIELDS:
        return None
    joined = collapse(values)
    if len(joined) > MAX_NORMALIZED:
        return None
    if len(joined) <= _MEMO_LEN:
        return _normalized_memo(name, joined)
    return _normalized_list(name, joined)


def vary_value(name: str, values: Sequence[str]) -> str:
    """A request header's lines as variants and the cache key compare them (module
    docstring): the canonical list for `LIST_FIELDS`, else the collapsed text."""
    canonical = normalized_list(name, values)
    return collapse(values) if canonical is None else canonical


def sidecar_lines(lines: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Request header lines (`kong_plugin.headers.header_lines`) as the sidecar should
    select variants by: each of `LIST_FIELDS` that has a canonical form becomes one line
    holding it, in the place of its first line; every other line is kept byte for byte.
    Returns `lines` itself when there is nothing to change."""
    positions: dict[bytes, list[int]] = {}
    for i, (name, _) in enumerate(lines):
        low = name.lower()
        if low in _LIST_FIELD_BYTES:
            positions.setdefault(low, []).append(i)
    if not positions:
        return lines
    replaced: dict[int, bytes] = {}
    dropped: set[int] = set()
    for low, where in positions.items():
        values = [lines[i][1].decode("utf-8", "surrogateescape") for i in where]
        canonical = normalized_list(low.decode("ascii"), values)
        if canonical is None:
            continue
        replaced[where[0]] = canonical.encode("ascii")
        dropped.update(where[1:])
    if not replaced:
        return lines
    return [
        (name, replaced.get(i, value)) for i, (name, value) in enumerate(lines) if i not in dropped
    ]


def secondary_key_parts(
    vary_names: Sequence[str], request_headers: HeaderInput
) -> tuple[tuple[str, str | None], ...]:
    """(name, `vary_value` or None when absent) for each of `vary_names`, in the given
    order: what the sidecar compares, given the lines `sidecar_lines` sends it."""
    h = Headers.of(request_headers)
    out = []
    for name in vary_names:
        lines = h.get_all(name)
        out.append((name.lower(), vary_value(name, lines) if lines else None))
    return tuple(out)


def variant_matches(
    vary_names: Sequence[str], stored_request_headers: HeaderInput, request_headers: HeaderInput
) -> bool:
    """§4.1: a stored response is selected only if every varied header matches."""
    return secondary_key_parts(vary_names, stored_request_headers) == secondary_key_parts(
        vary_names, request_headers
    )

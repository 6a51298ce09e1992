"""Targeted cache-control fields (RFC 9213): which directives govern *this* cache's handling
of a response, and which targeted fields clients get to see.

`response_cc` is the one way the plugin reads a response's (or a stored entry's) directives
for its own decisions -- storing, freshness, stale windows, reuse, sharing with guarded
requests. Of the fields in ``targeted_cache_control`` (`TargetedConfig.names`: Strata's own
field, then ``CDN-Cache-Control`` if enabled), the first one that is present, a valid
Structured Field Dictionary (RFC 8941, `kong_plugin.sf_dictionary`) and not empty decides
(§2.2); ``Cache-Control`` and ``Expires`` are then ignored (the result is marked
`CacheControl.targeted`, which `kong_plugin.freshness` reads). An empty or invalid targeted
field is ignored as a whole: the next one, or ``Cache-Control``, is used (§2.1). So a
targeted ``max-age=60`` makes a response with ``Cache-Control: no-store`` storable here, and
a targeted ``no-store`` keeps a ``Cache-Control: public, max-age=600`` response out.

Mapping of members to directives (§2.1: values of the wrong type are not consumed, the
directive is ignored; parameters are ignored):

* ``max-age``, ``s-maxage``, ``stale-while-revalidate``, ``stale-if-error``: an Integer
  >= 0, capped at 2^31 (RFC 9111 §1.2.2);
* ``no-store``, ``public``, ``must-revalidate``, ``proxy-revalidate``, ``must-understand``,
  ``immutable``, ``no-transform``: Boolean true;
* ``no-cache``, ``private``: Boolean true (unqualified), or field names -- a String
  holding a comma-separated list (RFC 9213's form) or an Inner List of Strings;
* anything else (unknown directives, request-only ones) is ignored.

A request's targeted fields mean nothing (RFC 9213 defines response fields only).

Forwarding (`hidden_fields`, `fields_to_clear`): Strata's own field is removed from every
response the plugin sends on unless ``forward_field``; ``CDN-Cache-Control``, when this
cache honours it, is passed on unless ``forward_cdn_cache_control`` is false. A targeted
field this cache does not honour is always passed on (§2.2: it "MUST be passed through").

Not guaranteed: responses the plugin never handles in its ``response`` phase (requests the
cache stays out of from ``access`` on) keep their targeted fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from kong_plugin.cache_control import DELTA_MAX, CacheControl, parse_cache_control
from kong_plugin.headers import HeaderInput, Headers
from kong_plugin.sf_dictionary import (
    MAX_FIELD_LENGTH,
    InnerList,
    Item,
    Member,
    combine,
    parse_dictionary,
)

if TYPE_CHECKING:
    from kong_plugin.config import PluginConfig, TargetedConfig

CDN_CACHE_CONTROL = "cdn-cache-control"

_DELTAS = {
    "max-age": "max_age",
    "s-maxage": "s_maxage",
    "stale-while-revalidate": "stale_while_revalidate",
    "stale-if-error": "stale_if_error",
}
_FLAGS = {
    "no-store": "no_store",
    "public": "public",
    "must-revalidate": "must_revalidate",
    "proxy-revalidate": "proxy_revalidate",
    "must-understand": "must_understand",
    "immutable": "immutable",
    "no-transform": "no_transform",
}
_QUALIFIABLE = {"no-cache": "no_cache", "private": "private"}
#: Values up to this length are memoised (they repeat across responses).
MEMO_MAX_LEN = 512


def _delta(member: Member) -> int | None:
    value = member.value if isinstance(member, Item) else None
    if type(value) is not int or value < 0:  # bool is an int subclass: excluded here
        return None
    return min(value, DELTA_MAX)


def _field_names(member: Member) -> frozenset[str] | None:
    """The field names of a qualified ``no-cache``/``private``; None: wrong type."""
    if isinstance(member, InnerList):
        values = [item.value for item in member.items]
        if not all(type(value) is str for value in values):
            return None
        names = [str(value) for value in values]
    elif isinstance(member.value, str):
        names = member.value.split(",")
    else:
        return None
    return frozenset(n.strip(" \t").lower() for n in names if n.strip(" \t"))


def directives(members: Mapping[str, Member]) -> CacheControl:
    """A targeted field's Dictionary as cache directives (module docstring)."""
    fields: dict[str, Any] = {"targeted": True}
    for key, member in members.items():
        if key in _DELTAS:
            seconds = _delta(member)
            if seconds is not None:
                fields[_DELTAS[key]] = seconds
        elif key in _FLAGS:
            if isinstance(member, Item) and member.value is True:
                fields[_FLAGS[key]] = True
        elif key in _QUALIFIABLE:
            attr = _QUALIFIABLE[key]
            if isinstance(member, Item) and member.value is True:
                fields[attr], fields[f"{attr}_fields"] = True, frozenset()
            else:
                names = _field_names(member)
                if names is not None:
                    fields[attr], fields[f"{attr}_fields"] = True, names
    return CacheControl(**fields)


def _from_value(value: str) -> CacheControl | None:
    members = parse_dictionary(value)
    return directives(members) if members else None


_from_value_memo = lru_cache(maxsize=512)(_from_value)
#: Longer values (up to the parser's own bound) get a small memo of their own: a stored
#: entry's field is read again on every hit, and a long one costs milliseconds to parse.
_from_long_value_memo = lru_cache(maxsize=32)(_from_value)


def targeted_cc(headers: HeaderInput, names: tuple[str, ...]) -> CacheControl | None:
    """The directives of the first of `names` (lower-case, in precedence order) that is
    present, valid and not empty; None if there is none."""
    h = Headers.of(headers)
    for name in names:
        value = combine(h.get_all(name))
        if not value:
            continue
        if len(value) <= MEMO_MAX_LEN:
            cc = _from_value_memo(value)
        elif len(value) <= MAX_FIELD_LENGTH:
            cc = _from_long_value_memo(value)
        else:
            cc = None  # over the parser's bound: invalid, ignored as a whole
        if cc is not None:
            return cc
    return None


def response_cc(headers: HeaderInput, cfg: PluginConfig) -> CacheControl:
    """The directives this cache follows for a response or a stored entry: the deciding
    targeted field's, else ``Cache-Control``'s (RFC 9213 §2.2)."""
    h = Headers.of(headers)
    cc = targeted_cc(h, cfg.targeted.names)
    return cc if cc is not None else parse_cache_control(h.get_all("cache-control"))


@lru_cache(maxsize=64)
def hidden_fields(targeted: TargetedConfig) -> frozenset[str]:
    """The (lower-case) targeted fields clients must not get (module docstring)."""
    out: set[str] = set()
    own = targeted.field.lower()
    if not targeted.forward_field:
        out.add(own)
    if targeted.cdn_cache_control and not targeted.forward_cdn_cache_control:
        out.add(CDN_CACHE_CONTROL)
    return frozenset(out)


def fields_to_clear(
    upstream: Mapping[str, object], complete: bool, targeted: TargetedConfig
) -> tuple[str, ...]:
    """The hidden fields a proxied response carries (`upstream`: its header map), each to
    be cleared with one PDK call; all hidden fields when that map may be cut short."""
    hidden = hidden_fields(targeted)
    if not hidden:
        return ()
    if not complete:
        return tuple(sorted(hidden))
    present = {str(name).lower() for name in upstream}
    return tuple(sorted(hidden & present))


def without_hidden(headers: Headers, targeted: TargetedConfig) -> Headers:
    """`headers` (a stored entry's, about to be replayed) without the hidden fields."""
    hidden = hidden_fields(targeted)
    if not hidden or not any(name in headers for name in hidden):
        return headers
    return headers.without(hidden)

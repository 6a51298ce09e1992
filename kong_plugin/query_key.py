"""The query component of the cache key, built from the raw query string as it was sent.

Origins read a query in different ways: most split it on ``&`` only, some on ``&`` and
``;``; some decode ``+`` as a space, some do not; some compare names case-insensitively or
mangle them (PHP reads ``a.b`` as ``a_b`` and ``a[]`` as an array). The key must keep
apart any two queries that *any* of them reads differently, while letting through the
equivalences every one of them shares. So:

* The query is split on ``&`` into *units* (empty units dropped: ``a=1&&b=2`` is
  ``a=1&b=2`` to every parser). A unit's name is the text before its first ``=``.
* A unit whose name is kept (see below) enters the key *whole*: an ``&``-only origin reads
  everything after the ``=``, ``;`` included, as the value (``a=1;utm_x=2`` has value
  ``1;utm_x=2`` there). A unit whose name is dropped is split on ``;`` into sub-parameters
  and only the kept ones enter the key, marked as such: an ``&``-only origin ignores the
  whole unit, an ``&;`` origin reads exactly those (``utm_x=1;admin=1`` never shares a key
  with ``admin=1``, but may with ``utm_x=2;admin=1``).
* Names are decoded only to decide whether they are kept: a name is dropped when it is
  outside ``vary_query_params`` (when set) or matches an ``ignore_query_params`` glob,
  under both readings of ``+`` (space or plus); a name is kept for ``vary_query_params``
  when it equals a listed name once case and punctuation are ignored, and always when it
  holds characters other than ``A-Za-z0-9._~+-`` and space (an origin may read
  ``page%00``, ``page[]`` or ``Page`` as ``page``).
* Text enters the key in its raw form, normalised only where RFC 3986 §6.2.2 says two
  forms are the same: hex digits of percent-escapes upper-cased, escapes of unreserved
  characters decoded. No other escape is decoded and nothing is re-encoded: ``+`` and
  ``%20`` stay apart, so do ``%FF`` and ``%FE``, and raw non-ASCII characters stay apart
  from their escapes. A text with a ``%`` that starts no escape is only upper-cased
  (decoding ``%41`` in ``%2%41`` would forge the escape ``%2A``).
* Units may be reordered by name, stably, so repeated parameters keep their order. Only
  units with one name whose characters are ``A-Za-z0-9._~+-`` or space move, compared
  with case and punctuation ignored (so ``a.b`` and ``A_b`` keep their relative order);
  any other unit (several names through ``;``, brackets, non-ASCII, control characters)
  stays where it is and no unit moves across it.

Not guaranteed: queries that every origin reads the same may still get different keys
(``%C3%A9`` and a raw ``é``; units reordered across one that does not move); a ``;``
inside a value is data to an ``&``-only origin and a separator to an ``&;`` one, so both
readings are kept apart. Parsers that split on anything other than ``&`` and ``;`` are
not modelled.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from kong_plugin.config import PluginConfig

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")
#: Decoded names made only of these may be reordered and compared loosely.
_PLAIN_NAME_RE = re.compile(r"[A-Za-z0-9._~+ -]*")
_NOT_ALNUM_RE = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True, slots=True)
class QueryUnit:
    """One ``&``-separated unit as it enters the key.

    `whole`: the unit's name is kept and `parts` is the unit itself (normalised); else
    `parts` are its kept ``;`` sub-parameters (normalised), in order.
    """

    whole: bool
    parts: tuple[str, ...]


def _upper(match: re.Match[str]) -> str:
    return "%" + match.group(1).upper()


def _decode_unreserved(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


def normalize_escapes(text: str) -> str:
    """`text` with percent-escapes normalised losslessly (RFC 3986 §6.2.2.1-2).

    Escapes of unreserved characters are decoded and the others upper-cased; when a ``%``
    starts no escape, escapes are only upper-cased (decoding could forge a new escape).
    """
    if "%" not in text:
        return text
    escapes = len(_ESCAPE_RE.findall(text))
    if escapes != text.count("%"):
        return _ESCAPE_RE.sub(_upper, text)
    return _ESCAPE_RE.sub(_decode_unreserved, text)


def _to_bytes(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def decode_name(raw: str, *, plus_is_space: bool) -> str:
    """A raw name percent-decoded (bytes that are not UTF-8 kept as lone surrogates)."""
    if plus_is_space:
        raw = raw.replace("+", " ")
    if "%" not in raw:
        return raw
    return unquote_to_bytes(_to_bytes(raw)).decode("utf-8", "surrogateescape")


def name_fold(raw: str) -> str | None:
    """How loosely origins may compare name `raw`: lower-case letters and digits only;
    None when the name holds anything else than ``A-Za-z0-9._~+-`` or space (then an
    origin may identify it with names this fold cannot predict)."""
    decoded = decode_name(raw, plus_is_space=True)
    if not _PLAIN_NAME_RE.fullmatch(decoded):
        return None
    return _NOT_ALNUM_RE.sub("", decoded.lower())


class _Filter:
    """Which names a route keeps in its key (see the module docstring)."""

    def __init__(self, config: PluginConfig) -> None:
        self._config = config
        self._wanted = config.vary_query_names
        self._wanted_folds: frozenset[str | None] | None = None

    def kept(self, raw_name: str) -> bool:
        if "%" in raw_name or "+" in raw_name:
            readings = {decode_name(raw_name, plus_is_space=s) for s in (True, False)}
        else:
            readings = {raw_name}
        if all(self._config.query_param_ignored(name) for name in readings):
            return False
        return self._wanted is None or self._wanted_loosely(raw_name, readings)

    def _wanted_loosely(self, raw_name: str, readings: Iterable[str]) -> bool:
        assert self._wanted is not None
        if any(name in self._wanted for name in readings):
            return True
        fold = name_fold(raw_name)
        if fold is None:
            return True
        if self._wanted_folds is None:
            self._wanted_folds = frozenset(name_fold(name) for name in self._wanted)
        return fold in self._wanted_folds


def _name(part: str) -> str:
    return part.partition("=")[0]


def _unit(text: str, keep: _Filter) -> tuple[QueryUnit, set[str | None]] | None:
    """The key's form of one unit and the folds of the names it shows any parser."""
    if ";" not in text:
        name = _name(text)
        if not keep.kept(name):
            return None
        return QueryUnit(True, (normalize_escapes(text),)), {name_fold(name)}
    if keep.kept(_name(text)):
        names = [_name(text)] + [_name(p) for p in text.split(";") if p and keep.kept(_name(p))]
        return QueryUnit(True, (normalize_escapes(text),)), {name_fold(n) for n in names}
    parts = [p for p in text.split(";") if p and keep.kept(_name(p))]
    if not parts:
        return None
    folds = {name_fold(_name(p)) for p in parts}
    return QueryUnit(False, tuple(normalize_escapes(p) for p in parts)), folds


def query_units(raw: str, config: PluginConfig) -> tuple[QueryUnit, ...]:
    """The query component of the key for raw query string `raw` (no leading ``?``)."""
    keep = _Filter(config)
    out: list[QueryUnit] = []
    run: list[tuple[str, QueryUnit]] = []
    for text in raw.split("&"):
        if not text:
            continue
        built = _unit(text, keep)
        if built is None:
            continue
        unit, folds = built
        fold = next(iter(folds)) if len(folds) == 1 else None
        if fold is None:  # stays in place, and nothing moves across it
            run.sort(key=lambda item: item[0])
            out.extend(u for _, u in run)
            run.clear()
            out.append(unit)
        else:
            run.append((fold, unit))
    run.sort(key=lambda item: item[0])
    out.extend(u for _, u in run)
    return tuple(out)

"""Lua patterns, as Kong's schema validators run them, compiled to Python ``bytes`` regexes.

Kong 3.9.3 checks ``match``, ``not_match``, ``match_all``, ``match_none`` and ``match_any`` with
``value:match(pattern)`` (``Schema.validators`` in ``kong/db/schema/init.lua``), i.e. LuaJIT's
``string.match`` (``str_find_aux``/``match`` in LuaJIT's ``src/lib_string.c``). The facts
reproduced here:

* it is a *search*: a pattern matches anywhere unless it starts with ``^``; ``^`` is an anchor
  only as the pattern's first character and ``$`` only as its last, elsewhere both are literals;
* it works on **bytes**, not characters: ``.`` is one byte (``"é"`` does not match ``"^.$"``),
  a quantifier after a multi-byte character repeats its last byte only, and the character
  classes are LuaJIT's locale-independent ASCII tables (``lj_char.c``; a byte >= 0x80 is in
  no class but the complements): ``%a`` letters, ``%c`` controls (0-31, 127), ``%d`` digits,
  ``%g`` printable except space (33-126), ``%l`` lower case, ``%p`` punctuation, ``%s`` space
  and 9-13, ``%u`` upper case, ``%w`` letters and digits, ``%x`` hex digits, ``%z`` NUL; an
  upper-case letter is the complement (``match_class``); ``%`` before any other character
  is that character;
* a set ``[...]`` ends at the first ``]`` that is not its first character (``[]]``, ``[^]]``)
  and not escaped with ``%`` (``classend``); inside it ``x-y`` is a byte range unless the
  ``-`` is followed by the closing ``]``, and a range never starts at an escape (``[%a-z]`` is
  letters, ``-`` and ``z``) (``matchbracketclass``);
* a quantifier (``*``, ``+``, ``?`` greedy, ``-`` lazy) applies to the single item before it;
  after ``)``, ``%1`` or an anchor it is a literal;
* captures ``(...)``, position captures ``()`` (an empty capture; a back-reference to one
  never matches), back-references ``%1``-``%9`` to a closed capture, at most 32 captures;
* the frontier ``%f[set]``: the previous byte (NUL at the start) is not in the set and the
  current one (NUL at the end) is.

Malformed patterns raise ``ValueError`` with LuaJIT's message (``malformed pattern (missing
']')``, ``invalid capture index``, ...). Difference, on purpose: LuaJIT raises only when the
matcher reaches the bad item for some value; kongsim refuses the pattern up front.

NOT supported (``ValueError``): the balance item ``%b``, and NUL bytes inside a pattern.
"""

from __future__ import annotations

import re
from functools import lru_cache

_ALL = frozenset(range(256))


def _span(low: int, high: int) -> frozenset[int]:
    return frozenset(range(low, high + 1))


_UPPER = _span(0x41, 0x5A)
_LOWER = _span(0x61, 0x7A)
_DIGIT = _span(0x30, 0x39)
_CLASSES: dict[str, frozenset[int]] = {
    "a": _UPPER | _LOWER,
    "c": _span(0x00, 0x1F) | {0x7F},
    "d": _DIGIT,
    "g": _span(0x21, 0x7E),
    "l": _LOWER,
    "p": _span(0x21, 0x2F) | _span(0x3A, 0x40) | _span(0x5B, 0x60) | _span(0x7B, 0x7E),
    "s": _span(0x09, 0x0D) | {0x20},
    "u": _UPPER,
    "w": _UPPER | _LOWER | _DIGIT,
    "x": _DIGIT | _span(0x41, 0x46) | _span(0x61, 0x66),
    "z": frozenset({0x00}),
}

_QUANTIFIERS = {ord("*"): "*", ord("+"): "+", ord("-"): "*?", ord("?"): "?"}
_MAX_CAPTURES = 32  # LUA_MAXCAPTURES
_ESC = ord("%")


def class_bytes(letter: int) -> frozenset[int]:
    """The bytes matched by ``%`` followed by byte ``letter`` (``match_class``)."""
    char = chr(letter)
    if char.isascii() and char.lower() in _CLASSES:
        members = _CLASSES[char.lower()]
        return _ALL - members if char.isupper() else members
    return frozenset({letter})


def _render(members: frozenset[int]) -> str:
    """A regex matching exactly one byte of ``members``."""
    if not members:
        return "(?!)"
    ranges: list[str] = []
    ordered = sorted(members)
    start = prev = ordered[0]
    for byte in [*ordered[1:], -1]:
        if byte == prev + 1:
            prev = byte
            continue
        ranges.append(f"\\x{start:02x}" if start == prev else f"\\x{start:02x}-\\x{prev:02x}")
        start = prev = byte
    return "[" + "".join(ranges) + "]"


def _set_end(pattern: bytes, i: int) -> int:
    """Index of the ``]`` closing the set that opens at ``pattern[i]`` (``classend``)."""
    n = len(pattern)
    j = i + 1
    if j < n and pattern[j] == ord("^"):
        j += 1
    while True:
        if j >= n:
            raise ValueError("malformed pattern (missing ']')")
        byte = pattern[j]
        j += 1
        if byte == _ESC and j < n:
            j += 1
        if j < n and pattern[j] == ord("]"):
            return j


def _set_bytes(pattern: bytes, i: int, end: int) -> frozenset[int]:
    """The bytes matched by the set ``pattern[i:end + 1]`` (``matchbracketclass``)."""
    k = i + 1
    negate = k < end and pattern[k] == ord("^")
    if negate:
        k += 1
    members: set[int] = set()
    while k < end:
        byte = pattern[k]
        if byte == _ESC:
            members |= class_bytes(pattern[k + 1])
            k += 2
        elif pattern[k + 1] == ord("-") and k + 2 < end:
            members |= set(range(byte, pattern[k + 2] + 1))
            k += 3
        else:
            members.add(byte)
            k += 1
    return _ALL - members if negate else frozenset(members)


def _frontier(members: frozenset[int]) -> str:
    """``%f[set]``: previous byte (NUL at the start) outside the set, current one inside."""
    if 0 in members:
        before = f"(?<={_render(_ALL - members)})"
        after = f"(?=(?:{_render(members)}|\\Z))"
    else:
        before = f"(?<!{_render(members)})"
        after = f"(?={_render(members)})"
    return before + after


@lru_cache(maxsize=512)
def to_regex(pattern: str | bytes) -> re.Pattern[bytes]:
    """Compile a Lua pattern into an equivalent ``bytes`` regex (use it with ``search``)."""
    raw = pattern.encode("utf-8", "surrogatepass") if isinstance(pattern, str) else pattern
    if b"\x00" in raw:
        raise ValueError("NUL bytes in a pattern are not supported by kongsim")
    out: list[str] = []
    n = len(raw)
    i = 0
    if raw[:1] == b"^":
        out.append(r"\A")
        i = 1
    opened: list[int] = []  # capture numbers still open
    closed: set[int] = set()
    positions: set[int] = set()
    count = 0
    while i < n:
        byte = raw[i]
        item: str
        if byte == ord("("):
            count += 1
            if count > _MAX_CAPTURES:
                raise ValueError("too many captures")
            if i + 1 < n and raw[i + 1] == ord(")"):
                out.append("()")
                positions.add(count)
                closed.add(count)
                i += 2
            else:
                out.append("(")
                opened.append(count)
                i += 1
            continue
        if byte == ord(")"):
            if not opened:
                raise ValueError("invalid pattern capture")
            closed.add(opened.pop())
            out.append(")")
            i += 1
            continue
        if byte == ord("$") and i == n - 1:
            out.append(r"\Z")
            i += 1
            continue
        if byte == _ESC:
            if i + 1 >= n:
                raise ValueError("malformed pattern (ends with '%')")
            nxt = raw[i + 1]
            if nxt == ord("b"):
                raise ValueError("'%b' (balanced match) is not supported by kongsim")
            if nxt == ord("f"):
                if i + 2 >= n or raw[i + 2] != ord("["):
                    raise ValueError("missing '[' after '%f' in pattern")
                end = _set_end(raw, i + 2)
                out.append(_frontier(_set_bytes(raw, i + 2, end)))
                i = end + 1
                continue
            if ord("0") <= nxt <= ord("9"):
                index = nxt - ord("0")
                if index == 0 or index not in closed:
                    raise ValueError("invalid capture index")
                out.append("(?!)" if index in positions else f"(?:\\{index})")
                i += 2
                continue
            item = _render(class_bytes(nxt))
            i += 2
        elif byte == ord("["):
            end = _set_end(raw, i)
            item = _render(_set_bytes(raw, i, end))
            i = end + 1
        elif byte == ord("."):
            item = _render(_ALL)
            i += 1
        else:
            item = f"\\x{byte:02x}"
            i += 1
        if i < n and raw[i] in _QUANTIFIERS:
            item += _QUANTIFIERS[raw[i]]
            i += 1
        out.append(item)
    if opened:
        raise ValueError("unfinished capture")
    try:
        return re.compile("".join(out).encode("ascii"))
    except re.error as exc:  # pragma: no cover - the translation above is always valid
        raise ValueError(f"kongsim could not translate the pattern: {exc}") from exc


def lua_match(value: str | bytes, pattern: str | bytes) -> bool:
    """``value:match(pattern) ~= nil`` in LuaJIT (``value`` is matched as its UTF-8 bytes)."""
    data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
    return to_regex(pattern).search(data) is not None

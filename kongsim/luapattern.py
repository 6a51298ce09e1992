"""Lua patterns (as used by Kong schema validators ``match`` & co.) translated to Python regexes.

Kong validates ``match``/``not_match``/``match_all``/``match_none``/``match_any`` with Lua's
``string.match``, which is a *search* (not a full match) unless the pattern is anchored with a
leading ``^``. Supported: character classes ``%a %c %d %g %l %p %s %u %w %x`` and their upper-case
complements, ``%`` escapes, ``.``, sets ``[...]``/``[^...]`` with ranges and classes, the
quantifiers ``* + - ?`` (``-`` is the lazy ``*``), captures ``(...)``, back-references ``%1``-``%9``
and the anchors ``^`` (first char) and ``$`` (last char).

NOT supported (raises ``ValueError``): ``%b``, ``%f``, position captures ``()``, upper-case
classes other than ``%S``/``%D`` inside a set. Lua works on bytes; this works on ``str``.
"""

from __future__ import annotations

import re
import string
from functools import lru_cache

_PUNCT = re.escape(string.punctuation)

_CLASS_SET = {
    "a": "A-Za-z",
    "c": r"\x00-\x1f\x7f",
    "d": "0-9",
    "g": r"\x21-\x7e",
    "l": "a-z",
    "p": _PUNCT,
    "s": r" \t\n\r\f\v",
    "u": "A-Z",
    "w": "A-Za-z0-9",
    "x": "0-9A-Fa-f",
}

_QUANTIFIERS = {"*": "*", "+": "+", "-": "*?", "?": "?"}


def _class_regex(letter: str) -> str:
    lower = letter.lower()
    if lower not in _CLASS_SET:
        return re.escape(letter)
    body = _CLASS_SET[lower]
    return f"[^{body}]" if letter.isupper() else f"[{body}]"


def _translate_set(pattern: str, i: int) -> tuple[str, int]:
    """Translate the set starting at ``pattern[i] == '['``; return (regex, index after ']')."""
    i += 1
    negate = False
    if i < len(pattern) and pattern[i] == "^":
        negate = True
        i += 1
    parts: list[str] = []
    first = True
    while True:
        if i >= len(pattern):
            raise ValueError("malformed pattern (missing ']')")
        ch = pattern[i]
        if ch == "]" and not first:
            i += 1
            break
        first = False
        if ch == "%":
            if i + 1 >= len(pattern):
                raise ValueError("malformed pattern (ends with '%')")
            nxt = pattern[i + 1]
            if nxt.lower() in _CLASS_SET:
                if nxt.isupper():
                    if nxt == "S":
                        parts.append(r"\S")
                    elif nxt == "D":
                        parts.append(r"\D")
                    else:
                        raise ValueError(f"unsupported class %{nxt} inside a set")
                else:
                    parts.append(_CLASS_SET[nxt])
            else:
                parts.append(re.escape(nxt))
            i += 2
            continue
        if i + 2 < len(pattern) and pattern[i + 1] == "-" and pattern[i + 2] != "]":
            parts.append(f"{re.escape(ch)}-{re.escape(pattern[i + 2])}")
            i += 3
            continue
        parts.append("\\" + ch if ch in "\\]^-[" else re.escape(ch))
        i += 1
    return ("[^" if negate else "[") + "".join(parts) + "]", i


@lru_cache(maxsize=256)
def to_regex(pattern: str) -> re.Pattern[str]:
    """Compile a Lua pattern into an equivalent Python regex (use with ``search``)."""
    out: list[str] = []
    i = 0
    n = len(pattern)
    if pattern.startswith("^"):
        out.append(r"\A")
        i = 1
    while i < n:
        ch = pattern[i]
        if ch == "$" and i == n - 1:
            out.append(r"\Z")
            i += 1
            continue
        if ch == "(":
            if i + 1 < n and pattern[i + 1] == ")":
                raise ValueError("position captures '()' are not supported")
            out.append("(")
            i += 1
            continue
        if ch == ")":
            out.append(")")
            i += 1
            continue
        if ch == "%":
            if i + 1 >= n:
                raise ValueError("malformed pattern (ends with '%')")
            nxt = pattern[i + 1]
            if nxt in "bf":
                raise ValueError(f"%{nxt} is not supported")
            if nxt.isdigit():
                out.append("\\" + nxt)
                i += 2
                continue
            item = _class_regex(nxt)
            i += 2
        elif ch == "[":
            item, i = _translate_set(pattern, i)
        elif ch == ".":
            item = r"[\s\S]"
            i += 1
        else:
            item = re.escape(ch)
            i += 1
        if i < n and pattern[i] in _QUANTIFIERS:
            item += _QUANTIFIERS[pattern[i]]
            i += 1
        out.append(item)
    return re.compile("".join(out))


def lua_match(value: str, pattern: str) -> bool:
    """``value:match(pattern) ~= nil`` in Lua."""
    return to_regex(pattern).search(value) is not None

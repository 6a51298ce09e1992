"""Structured Field Dictionaries (RFC 8941 §3.2), parsed as §4.2.2 says: the syntax of the
targeted cache-control fields (RFC 9213 §2.1).

`parse_dictionary` takes the field as one string or as its field lines (combined with
``", "`` first, §4.2) and returns the members in order, or None when the field is invalid.
Everything in the grammar is read: keys (``lcalpha``/``*`` then ``lcalpha``, digits,
``_-.*``), bare items -- Integer (at most 15 digits), Decimal (at most 12 integer and 3
fraction digits), String (printable ASCII, ``\\"`` and ``\\\\`` escapes only), Token,
Byte Sequence (base64 between colons) and Boolean (``?1``/``?0``) --, Inner Lists,
Parameters, and the whitespace rules (SP around the whole field; OWS around the commas
between members; SP inside Inner Lists; SP after ``;``; nothing around ``=``). A member
without a value is Boolean true (with its parameters). A repeated key keeps its first
position and its last value (§4.2.2). Any parse error fails the whole field (§4.2).

Bounds: a field over `MAX_FIELD_LENGTH` characters (after combining) or with more than
`MAX_MEMBERS` members is treated as invalid. The parser is pure, never raises on input,
and runs in time linear in the field's length.

Not guaranteed: a Decimal is a Python float (RFC 8941 Decimals have at most 3 fraction
digits, so nothing a field can hold is lost in practice); nothing is serialised back.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: Fields longer than this (16 KiB, after combining the lines) are invalid.
MAX_FIELD_LENGTH = 16384
#: Dictionaries with more members than this are invalid.
MAX_MEMBERS = 1024


@dataclass(frozen=True, slots=True)
class Token:
    """An RFC 8941 Token (§3.3.4), kept apart from a String."""

    value: str


BareItem = int | float | str | bytes | bool | Token
Parameters = tuple[tuple[str, BareItem], ...]


@dataclass(frozen=True, slots=True)
class Item:
    """A bare item and its parameters (§3.3)."""

    value: BareItem
    params: Parameters = ()


@dataclass(frozen=True, slots=True)
class InnerList:
    """An Inner List (§3.1.1): items and the list's own parameters."""

    items: tuple[Item, ...]
    params: Parameters = ()


Member = Item | InnerList

_KEY_RE = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_TOKEN_RE = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_NUMBER_RE = re.compile(r"-?[0-9]+(?:\.[0-9]*)?")
_BASE64_RE = re.compile(r"[A-Za-z0-9+/=]*")
_STRING_CHUNK_RE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]+")
_OWS = " \t"


class _ParseError(Exception):
    """The field does not follow RFC 8941: the caller treats it as absent."""


class _Cursor:
    """The input and a position in it; every parse function moves `pos` forward."""

    __slots__ = ("pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def skip(self, chars: str) -> None:
        text, pos = self.text, self.pos
        while pos < len(text) and text[pos] in chars:
            pos += 1
        self.pos = pos

    def match(self, pattern: re.Pattern[str]) -> str:
        m = pattern.match(self.text, self.pos)
        if m is None or not m.group():
            raise _ParseError
        self.pos = m.end()
        return m.group()


def _key(c: _Cursor) -> str:
    """§4.2.3.3."""
    return c.match(_KEY_RE)


def _number(c: _Cursor) -> int | float:
    """§4.2.4: Integer or Decimal."""
    text = c.match(_NUMBER_RE)
    digits = text.lstrip("-")
    whole, dot, fraction = digits.partition(".")
    if not dot:
        if len(whole) > 15:
            raise _ParseError
        return int(text)
    if len(whole) > 12 or not fraction or len(fraction) > 3:
        raise _ParseError
    return float(text)


def _string(c: _Cursor) -> str:
    """§4.2.5: after the opening quote, printable ASCII with ``\\"`` and ``\\\\``."""
    c.pos += 1
    out: list[str] = []
    text = c.text
    while True:
        m = _STRING_CHUNK_RE.match(text, c.pos)
        if m is not None:
            out.append(m.group())
            c.pos = m.end()
        char = c.peek()
        if char == '"':
            c.pos += 1
            return "".join(out)
        if char == "\\":
            escaped = text[c.pos + 1 : c.pos + 2]
            if escaped not in ('"', "\\"):
                raise _ParseError
            out.append(escaped)
            c.pos += 2
            continue
        raise _ParseError  # end of input, a control or a non-ASCII character


def _byte_sequence(c: _Cursor) -> bytes:
    """§4.2.7: base64 between colons; missing ``=`` padding is tolerated."""
    c.pos += 1
    m = _BASE64_RE.match(c.text, c.pos)
    encoded = m.group() if m is not None else ""
    c.pos += len(encoded)
    if c.peek() != ":":
        raise _ParseError
    c.pos += 1
    unpadded = encoded.rstrip("=")
    if "=" in unpadded or len(unpadded) % 4 == 1:
        raise _ParseError
    try:
        return base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _ParseError from exc


def _boolean(c: _Cursor) -> bool:
    """§4.2.8: ``?1`` or ``?0``."""
    value = c.text[c.pos + 1 : c.pos + 2]
    if value not in ("0", "1"):
        raise _ParseError
    c.pos += 2
    return value == "1"


def _bare_item(c: _Cursor) -> BareItem:
    """§4.2.3.1: the first character says which type."""
    char = c.peek()
    if char == "-" or char.isdigit():
        return _number(c)
    if char == '"':
        return _string(c)
    if char == ":":
        return _byte_sequence(c)
    if char == "?":
        return _boolean(c)
    if char == "*" or (char.isascii() and char.isalpha()):
        return Token(c.match(_TOKEN_RE))
    raise _ParseError


def _parameters(c: _Cursor) -> Parameters:
    """§4.2.3.2: ``;key[=value]`` repeated; a repeated key keeps its last value."""
    params: dict[str, BareItem] = {}
    while c.peek() == ";":
        c.pos += 1
        c.skip(" ")
        key = _key(c)
        value: BareItem = True
        if c.peek() == "=":
            c.pos += 1
            value = _bare_item(c)
        params[key] = value
    return tuple(params.items())


def _item(c: _Cursor) -> Item:
    """§4.2.3."""
    value = _bare_item(c)
    return Item(value, _parameters(c))


def _inner_list(c: _Cursor) -> InnerList:
    """§4.2.1.2: ``(`` items separated by SP ``)`` then parameters."""
    c.pos += 1
    items: list[Item] = []
    while not c.at_end():
        c.skip(" ")
        if c.peek() == ")":
            c.pos += 1
            return InnerList(tuple(items), _parameters(c))
        items.append(_item(c))
        if c.peek() not in (" ", ")"):
            raise _ParseError
    raise _ParseError


def _dictionary(text: str) -> dict[str, Member]:
    """§4.2.2, on the whole field (§4.2: leading and trailing SP discarded)."""
    c = _Cursor(text.strip(" "))
    members: dict[str, Member] = {}
    while not c.at_end():
        key = _key(c)
        if c.peek() == "=":
            c.pos += 1
            member: Member = _inner_list(c) if c.peek() == "(" else _item(c)
        else:
            member = Item(True, _parameters(c))
        members[key] = member
        if len(members) > MAX_MEMBERS:
            raise _ParseError
        c.skip(_OWS)
        if c.at_end():
            break
        if c.peek() != ",":
            raise _ParseError
        c.pos += 1
        c.skip(_OWS)
        if c.at_end():
            raise _ParseError  # a trailing comma
    return members


def combine(lines: str | Sequence[str] | None) -> str | None:
    """The field lines as one value (§4.2: joined with ``", "``); None when absent."""
    if lines is None:
        return None
    if isinstance(lines, str):
        return lines
    parts = [line for line in lines if isinstance(line, str)]
    return ", ".join(parts) if parts else None


def parse_dictionary(lines: str | Sequence[str] | None) -> Mapping[str, Member] | None:
    """The Dictionary in a field (one string or its lines), in member order; an empty
    mapping when the field is absent or empty; None when it is invalid (RFC 8941 §4.2:
    any error fails the whole field; also over `MAX_FIELD_LENGTH` or `MAX_MEMBERS`)."""
    text = combine(lines)
    if text is None:
        return {}
    if len(text) > MAX_FIELD_LENGTH:
        return None
    try:
        return _dictionary(text)
    except _ParseError:
        return None

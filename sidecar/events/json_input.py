"""Untrusted bytes to one JSON object, refusing what readers could disagree on.

Anyone who can write to the topic can send anything, so the size is checked before any
other work. Then the bytes must be UTF-8: one leading UTF-8 byte order mark is ignored (RFC
8259 §8.1 allows it), and a NUL byte, which a UTF-8 JSON text never holds, is taken for
UTF-16 or UTF-32. The JSON must be strict: no ``NaN``/``Infinity``, no raw control
characters in strings, no trailing data, no key twice in one object, nesting at most
`MAX_DEPTH` deep. Every failure is an `EventError`.

Not guaranteed: strings may still hold escaped NUL, control characters or lone surrogates
(``"\\u0000"``, ``"\\ud800"``); the field checks refuse those where they matter. Numbers
are Python's: a float out of range is infinity, an integer of more than 4300 digits is
refused. At most `MAX_CONTAINERS` arrays and objects in all (checked before decoding, so a
text of a malformed JSON with many brackets may be refused for that first). Time is
bounded by the size, not constant: the slowest 1 MiB shape measured
(hundreds of thousands of empty arrays) takes 0.1-0.2 s. ``yielding=True`` decodes with
the standard library's pure-Python scanner (same rules, same errors, about 2-4 times
slower): in a worker thread it lets other threads (the event loop) run every switch
interval, where the C decoder holds the interpreter for the whole text.
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
import re
from typing import Any, NoReturn

from sidecar.events.errors import EventError, Reason

__all__ = ["MAX_DEPTH", "MAX_EVENT_BYTES", "json_type", "quote", "read_object"]

#: The largest message accepted, in bytes.
MAX_EVENT_BYTES = 1024 * 1024
#: The deepest nesting of arrays and objects accepted (the event object itself is 1).
MAX_DEPTH = 32

#: Arrays and objects in one event, in all (an event of its own needs at most 7; more is a
#: flood of allocations that would stall the process for a collection of its whole heap).
MAX_CONTAINERS = 10_000

_BOM = b"\xef\xbb\xbf"
#: A JSON string, or one bracket outside strings.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


class _DuplicateKeyError(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _ConstantError(Exception):
    pass


def quote(value: object, limit: int = 40) -> str:
    """A short, escaped rendering of `value` for an error message (never the whole of a
    large value, never a raw control character)."""
    text = ascii(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKeyError(key)
            seen.add(key)
    return found


def _constant(name: str) -> NoReturn:
    raise _ConstantError(name)


def _deeper_than(value: Any, limit: int) -> bool:
    """Does `value` nest arrays and objects more than `limit` levels deep? Walked level by
    level, without recursion, stopping at the first level past `limit`."""
    level = [value]
    depth = 0
    while level:
        containers = [item for item in level if isinstance(item, dict | list)]
        if not containers:
            return False
        depth += 1
        if depth > limit:
            return True
        level = []
        for container in containers:
            level.extend(container.values() if isinstance(container, dict) else container)
    return False


def _check_containers(text: str) -> None:
    """Refuse more than `MAX_CONTAINERS` arrays and objects, or nesting deeper than
    `MAX_DEPTH`, without decoding: a scan of the brackets outside strings (a pure-Python
    loop, so a thread running it lets the others run). Only when a plain count of the
    brackets, strings included, exceeds the bound."""
    if text.count("[") + text.count("{") <= MAX_CONTAINERS:
        return
    depth = count = 0
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            count += 1
            if depth > MAX_DEPTH:
                raise EventError(
                    Reason.TOO_DEEP, f"arrays and objects nest deeper than {MAX_DEPTH} levels"
                )
            if count > MAX_CONTAINERS:
                raise EventError(
                    Reason.TOO_MANY_ITEMS,
                    f"the event has more than {MAX_CONTAINERS} arrays and objects in all",
                )
        elif token in "]}":
            depth -= 1


def _decoder(yielding: bool) -> json.JSONDecoder:
    decoder = json.JSONDecoder(object_pairs_hook=_object, parse_constant=_constant)
    if yielding:  # one per call: the pure-Python scanner keeps state in the decoder
        decoder.parse_string = json.decoder.py_scanstring  # type: ignore[attr-defined]
        decoder.scan_once = json.scanner.py_make_scanner(decoder)  # type: ignore[attr-defined]
    return decoder


def read_object(
    raw: bytes | bytearray | memoryview | None, *, yielding: bool = False
) -> dict[str, Any]:
    """The JSON object in `raw` (see the module docstring for what is refused, and for
    `yielding`)."""
    if raw is None:
        raise EventError(Reason.MALFORMED_JSON, "the message has no value (a tombstone)")
    if len(raw) > MAX_EVENT_BYTES:
        raise EventError(
            Reason.TOO_LARGE,
            f"the event is {len(raw)} bytes, more than the {MAX_EVENT_BYTES} allowed",
        )
    data = bytes(raw)
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EventError(
            Reason.BAD_ENCODING, f"the event is not UTF-8 (bad byte at offset {exc.start})"
        ) from exc
    if "\x00" in text:
        raise EventError(
            Reason.BAD_ENCODING,
            f"the event has a NUL byte at offset {data.index(0)}: JSON in UTF-8 never has"
            " one (UTF-16 or UTF-32?)",
        )
    if not text.strip():
        raise EventError(Reason.MALFORMED_JSON, "the event is empty")
    _check_containers(text)
    try:
        value = _decoder(yielding).decode(text)
    except _DuplicateKeyError as exc:
        raise EventError(
            Reason.DUPLICATE_KEY, f"the key {quote(exc.key)} appears twice in one object"
        ) from exc
    except _ConstantError as exc:
        raise EventError(
            Reason.MALFORMED_JSON, f"{exc} is not JSON (numbers must be finite)"
        ) from exc
    except RecursionError as exc:
        raise EventError(
            Reason.TOO_DEEP, f"arrays and objects nest deeper than {MAX_DEPTH} levels"
        ) from exc
    except json.JSONDecodeError as exc:
        raise EventError(
            Reason.MALFORMED_JSON,
            f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
        ) from exc
    except ValueError as exc:
        raise EventError(Reason.MALFORMED_JSON, f"not a usable JSON number: {exc}") from exc
    if not isinstance(value, dict):
        raise EventError(
            Reason.NOT_AN_OBJECT, f"the event is a JSON {json_type(value)}, not an object"
        )
    if _deeper_than(value, MAX_DEPTH):
        raise EventError(Reason.TOO_DEEP, f"arrays and objects nest deeper than {MAX_DEPTH} levels")
    return value


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"

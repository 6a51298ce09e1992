"""Hostile input: whatever bytes arrive on the topic, parse answers an event or an
`EventError` with a clear reason, and a maximal message is read in bounded time."""

from __future__ import annotations

import contextlib
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.events import MAX_DEPTH, MAX_EVENT_BYTES, EventError, Reason, parse
from sidecar.events.event import MAX_ITEMS


def _refused(raw: bytes | None) -> EventError:
    with pytest.raises(EventError) as caught:
        parse(raw)
    return caught.value


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", Reason.MALFORMED_JSON),
        (b"   \n", Reason.MALFORMED_JSON),
        (b"{", Reason.MALFORMED_JSON),
        (b'{"v":1,"tags":["t"]', Reason.MALFORMED_JSON),
        (b'{"v":1,"tags":["t"],}', Reason.MALFORMED_JSON),
        (b"{'v':1,'tags':['t']}", Reason.MALFORMED_JSON),
        (b'{"v":1,"tags":["t"]} {"v":1}', Reason.MALFORMED_JSON),
        (b'{"v":1,"tags":["t"],"x":NaN}', Reason.MALFORMED_JSON),
        (b'{"v":1,"tags":["t"],"x":-Infinity}', Reason.MALFORMED_JSON),
        (b'{"v":1,"tags":["a\tb"]}', Reason.MALFORMED_JSON),  # raw control char in a string
        (b'{"v":1,"tags":["t"],"x":' + b"9" * 5000 + b"}", Reason.MALFORMED_JSON),
        (b"\xff\xfe{\x00}\x00", Reason.BAD_ENCODING),
        (b'{"v":1,"tags":["t"]}\x00', Reason.BAD_ENCODING),
        ('{"v":1,"tags":["t"]}'.encode("utf-16"), Reason.BAD_ENCODING),
        ('{"v":1,"tags":["t"]}'.encode("utf-32-le"), Reason.BAD_ENCODING),
        (b'{"v":1,"tags":["caf\xe9"]}', Reason.BAD_ENCODING),  # Latin-1, not UTF-8
        (b'{"v":1,"tags":["\xed\xa0\x80"]}', Reason.BAD_ENCODING),  # an encoded surrogate
        (b"[]", Reason.NOT_AN_OBJECT),
        (b'[{"v":1,"tags":["t"]}]', Reason.NOT_AN_OBJECT),
        (b'"v"', Reason.NOT_AN_OBJECT),
        (b"1", Reason.NOT_AN_OBJECT),
        (b"null", Reason.NOT_AN_OBJECT),
        (b'{"v":1,"v":2,"tags":["t"]}', Reason.DUPLICATE_KEY),
        (b'{"v":1,"tags":["t"],"tags":["u"]}', Reason.DUPLICATE_KEY),
        (b'{"v":1,"tags":["t"],"x":{"a":1,"a":1}}', Reason.DUPLICATE_KEY),
        (b'{"v":1,"tags":["\\u0000"]}', Reason.BAD_VALUE),
        (b'{"v":1,"urls":["/a\\u0000"]}', Reason.BAD_VALUE),
        (b'{"v":1,"urls":["/a\\n"]}', Reason.BAD_VALUE),
        (b'{"v":1,"origin":"a\\u001bb","tags":["t"]}', Reason.BAD_VALUE),
        (b'{"v":1,"urls":["/\\ud800"]}', Reason.BAD_VALUE),  # a lone surrogate escape
        (b'{"v":1,"origin":"\\udfff","tags":["t"]}', Reason.BAD_VALUE),
        (b'{"v":1,"tags":[1]}', Reason.WRONG_TYPE),
        (b'{"v":1,"urls":[12345]}', Reason.WRONG_TYPE),
        (b'{"v":1,"flush":1}', Reason.WRONG_TYPE),
        (b'{"v":true,"tags":["t"]}', Reason.WRONG_TYPE),
    ],
)
def test_each_hostile_input_has_its_reason(raw: bytes, reason: Reason) -> None:
    error = _refused(raw)
    assert error.reason == reason, error
    assert error.message


def test_a_tombstone_is_refused() -> None:
    assert _refused(None).reason == Reason.MALFORMED_JSON


def test_a_utf8_byte_order_mark_is_ignored() -> None:
    # RFC 8259 §8.1: a reader may ignore it; Windows tools write it.
    assert parse(b'\xef\xbb\xbf{"v":1,"tags":["t"]}').tags == ("t",)
    assert _refused(b"\xef\xbb\xbf").reason == Reason.MALFORMED_JSON
    # Only one, and only at the start.
    assert _refused(b'\xef\xbb\xbf\xef\xbb\xbf{"v":1,"tags":["t"]}').reason == (
        Reason.MALFORMED_JSON
    )


def test_version_one_written_as_true_or_as_a_string_is_a_wrong_type() -> None:
    assert "not a boolean" in _refused(b'{"v":true,"tags":["t"]}').message
    assert "not a string" in _refused(b'{"v":"1","tags":["t"]}').message


def _nested(depth: int) -> bytes:
    """An event whose unknown field nests arrays so that the whole is `depth` deep."""
    inner = depth - 1
    return b'{"v":1,"tags":["t"],"x":' + b"[" * inner + b"]" * inner + b"}"


def test_nesting_is_bounded() -> None:
    assert parse(_nested(MAX_DEPTH)).tags == ("t",)
    assert _refused(_nested(MAX_DEPTH + 1)).reason == Reason.TOO_DEEP
    # Far deeper than Python's recursion limit: still only an EventError.
    assert _refused(_nested(100_000)).reason == Reason.TOO_DEEP
    assert _refused(b"[" * MAX_EVENT_BYTES).reason == Reason.TOO_DEEP
    assert _refused(b'{"a":' * 150_000 + b"1" + b"}" * 150_000).reason == Reason.TOO_DEEP


def test_size_is_checked_before_anything_else() -> None:
    error = _refused(b"\xff" * (MAX_EVENT_BYTES + 1))
    assert error.reason == Reason.TOO_LARGE
    assert str(MAX_EVENT_BYTES) in error.message


def test_a_huge_array_is_refused_by_count() -> None:
    raw = b'{"v":1,"tags":[' + b",".join([b'"t"'] * (MAX_ITEMS + 1)) + b"]}"
    error = _refused(raw)
    assert error.reason == Reason.TOO_MANY_ITEMS
    assert error.message.startswith("tags ")


def test_a_huge_string_is_refused_and_not_echoed() -> None:
    raw = json.dumps({"v": 1, "tags": ["x" * 900_000]}).encode()
    error = _refused(raw)
    assert error.reason == Reason.TOO_LONG
    assert len(str(error)) < 200


def test_messages_quote_values_escaped_and_short() -> None:
    error = _refused(json.dumps({"v": 1, "tags": ["ok", "\u001b[31mred" + "y" * 200]}).encode())
    assert error.reason == Reason.BAD_VALUE
    assert "\x1b" not in error.message
    assert len(error.message) < 200


def _maximal_events() -> list[bytes]:
    """Messages just under the size limit, each stressing one part of the reader."""
    budget = MAX_EVENT_BYTES - 64
    one_string = json.dumps({"v": 1, "tags": ["t"], "x": "a" * budget}).encode()
    many_keys = (
        b'{"v":1,"tags":["t"],' + b",".join(b'"k%06d":0' % i for i in range(budget // 12)) + b"}"
    )
    many_lists = b'{"v":1,"tags":["t"],"x":[' + b",".join([b"[]"] * (budget // 3)) + b"]}"
    many_objects = b'{"v":1,"tags":["t"],"x":[' + b",".join([b"{}"] * (budget // 3)) + b"]}"
    escapes = json.dumps({"v": 1, "tags": ["t"], "x": "\u00e9" * (budget // 7)}).encode()
    items = json.dumps(
        {"v": 1, "urls": [f"/{i:04d}/" + "p" * 1000 for i in range(MAX_ITEMS)]}
    ).encode()
    prefixes = json.dumps(
        {"v": 1, "prefixes": [f"/{i:04d}/" + "a/" * 500 for i in range(MAX_ITEMS)]}
    ).encode()
    return [one_string, many_keys, many_lists, many_objects, escapes, items, prefixes]


def test_a_maximal_event_is_read_in_bounded_time() -> None:
    events = _maximal_events()
    for raw in events:
        assert len(raw) <= MAX_EVENT_BYTES
        started = time.perf_counter()
        with contextlib.suppress(EventError):
            parse(raw)
        # Typically 5-60 ms each; the bound leaves room for a loaded 2-core machine.
        assert time.perf_counter() - started < 2.0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=256))
def test_random_bytes_give_an_event_or_an_event_error(raw: bytes) -> None:
    with contextlib.suppress(EventError):
        parse(raw)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
_FIELDS = st.sampled_from(
    ["v", "urls", "tags", "prefixes", "flush", "soft", "id", "origin", "ts", "x"]
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_FIELDS, _JSON, max_size=6))
def test_random_objects_give_an_event_or_an_event_error(doc: dict[str, object]) -> None:
    with contextlib.suppress(EventError):
        parse(json.dumps(doc).encode())


def test_arrays_and_objects_are_counted_before_decoding() -> None:
    from sidecar.events.json_input import MAX_CONTAINERS  # noqa: PLC0415

    def event(containers: int, item: bytes) -> bytes:
        return b'{"v":1,"tags":["t"],"x":[' + b",".join([item] * containers) + b"]}"

    # The event object and "tags" and "x" are three of them.
    assert parse(event(MAX_CONTAINERS - 3, b"[]")).tags == ("t",)
    assert parse(event(MAX_CONTAINERS - 3, b"{}")).tags == ("t",)
    refused = _refused(event(MAX_CONTAINERS - 2, b"[]"))
    assert refused.reason == Reason.TOO_MANY_ITEMS and "arrays and objects" in refused.message
    # Brackets inside strings are not arrays.
    assert parse(event(MAX_CONTAINERS * 2, b'"[{"')).tags == ("t",)
    for shape in (b"[]", b"{}", b'{"a":[]}'):
        assert _refused(event(MAX_EVENT_BYTES // 10, shape)).reason in {
            Reason.TOO_MANY_ITEMS,
            Reason.TOO_LARGE,
        }


@pytest.mark.parametrize(
    "raw",
    [
        b'{"v":1,"tags":["t"],"x":[1,2.5e3,-0,true,null,"\\u00e9\\n",{"a":[{}]}]}',
        b'{"v":1,"tags":["t"],"x":NaN}',
        b'{"v":1,"tags":["t"],"x":{"a":1,"a":2}}',
        b'{"v":1,"tags":["a\tb"]}',
        b'{"v":1,"tags":["t"],"x":' + b"9" * 5000 + b"}",
        b'{"v":1,"tags":["t"]} x',
        b'{"v":1,"tags":["t"],"x":' + b"[" * 40 + b"]" * 40 + b"}",
    ],
)
def test_the_yielding_decoder_gives_the_same_answer(raw: bytes) -> None:
    def answer(yielding: bool) -> object:
        try:
            return parse(raw, yielding=yielding)
        except EventError as exc:
            return exc.reason

    assert answer(True) == answer(False)

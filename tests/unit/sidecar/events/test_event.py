"""The version-1 event: what parse accepts, the canonical encoding, ids, and events built
in Python (held to the same rules)."""

from __future__ import annotations

import json

import pytest

from sidecar.events import EventError, InvalidationEvent, Reason, encode, event_id, parse
from sidecar.events.event import (
    MAX_FLUSH_CHARS,
    MAX_ID_CHARS,
    MAX_ITEMS,
    MAX_ORIGIN_CHARS,
    MAX_TS,
    MAX_URL_CHARS,
)


def _parse(doc: object) -> InvalidationEvent:
    return parse(json.dumps(doc).encode())


def _reason(doc: object) -> Reason:
    with pytest.raises(EventError) as caught:
        _parse(doc)
    return caught.value.reason


def test_every_field_is_read() -> None:
    event = _parse(
        {
            "v": 1,
            "urls": ["/products/42?lang=en"],
            "tags": ["products:42"],
            "prefixes": ["/products/"],
            "flush": "catalog",
            "soft": True,
            "id": "evt-1",
            "origin": "sidecar node-a",
            "ts": 1767225600000,
        }
    )
    assert event == InvalidationEvent(
        urls=("/products/42?lang=en",),
        tags=("products:42",),
        prefixes=("/products/",),
        flush="catalog",
        soft=True,
        id="evt-1",
        origin="sidecar node-a",
        ts=1767225600000,
    )


def test_defaults_of_the_optional_fields() -> None:
    event = _parse({"v": 1, "tags": ["t"]})
    assert (event.urls, event.prefixes, event.flush, event.soft) == ((), (), None, False)
    assert (event.id, event.origin, event.ts) == (None, None, None)


@pytest.mark.parametrize(
    "doc",
    [
        {"v": 1, "urls": ["/"]},
        {"v": 1, "tags": ["a"]},
        {"v": 1, "prefixes": ["/a"]},
        {"v": 1, "flush": "svc"},
        {"v": 1, "flush": "*"},
        {"v": 1, "urls": [], "tags": [], "prefixes": [], "flush": "svc"},
    ],
)
def test_one_target_is_enough(doc: dict[str, object]) -> None:
    _parse(doc)


@pytest.mark.parametrize(
    "doc", [{"v": 1}, {"v": 1, "urls": [], "tags": [], "prefixes": []}, {"v": 1, "soft": True}]
)
def test_nothing_to_purge_is_refused_as_empty(doc: dict[str, object]) -> None:
    assert _reason(doc) == Reason.EMPTY


def test_unknown_top_level_fields_are_ignored() -> None:
    event = _parse({"v": 1, "tags": ["t"], "x-future": {"a": [1, 2, {"b": None}]}, "w": 3})
    assert event == InvalidationEvent(tags=("t",))
    assert b"future" not in encode(event)


def test_version_one_written_as_a_float_is_version_one() -> None:
    # JSON has one number type; JSON Schema calls 1.0 an integer, and Python producers
    # write 1.0 for a float 1.
    assert parse(b'{"v": 1.0, "tags": ["t"]}') == parse(b'{"v": 1, "tags": ["t"]}')
    assert parse(b'{"v": 1e0, "tags": ["t"]}').tags == ("t",)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"tags": ["t"]}', Reason.MISSING_VERSION),
        (b'{"v": 2, "tags": ["t"]}', Reason.UNSUPPORTED_VERSION),
        (b'{"v": 0, "tags": ["t"]}', Reason.UNSUPPORTED_VERSION),
        (b'{"v": 1.5, "tags": ["t"]}', Reason.UNSUPPORTED_VERSION),
        (b'{"v": -1, "tags": ["t"]}', Reason.UNSUPPORTED_VERSION),
        (b'{"v": true, "tags": ["t"]}', Reason.WRONG_TYPE),
        (b'{"v": "1", "tags": ["t"]}', Reason.WRONG_TYPE),
        (b'{"v": null, "tags": ["t"]}', Reason.WRONG_TYPE),
        (b'{"v": [1], "tags": ["t"]}', Reason.WRONG_TYPE),
    ],
)
def test_version(raw: bytes, reason: Reason) -> None:
    with pytest.raises(EventError) as caught:
        parse(raw)
    assert caught.value.reason == reason
    assert '"v"' in caught.value.message


def test_an_unknown_version_is_refused_before_its_fields_are_read() -> None:
    # A version-2 event may mean something else by "tags": its fields are not judged.
    with pytest.raises(EventError) as caught:
        parse(b'{"v": 2, "tags": 42}')
    assert caught.value.reason == Reason.UNSUPPORTED_VERSION


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"v": 1, "tags": "products:42"}, "tags"),
        ({"v": 1, "tags": [42]}, "tags[0]"),
        ({"v": 1, "tags": ["a", None]}, "tags[1]"),
        ({"v": 1, "urls": {"/a": 1}}, "urls"),
        ({"v": 1, "urls": ["/a", ["/b"]]}, "urls[1]"),
        ({"v": 1, "prefixes": [True]}, "prefixes[0]"),
        ({"v": 1, "tags": ["t"], "flush": 7}, "flush"),
        ({"v": 1, "tags": ["t"], "flush": None}, "flush"),
        ({"v": 1, "tags": ["t"], "soft": "true"}, "soft"),
        ({"v": 1, "tags": ["t"], "soft": 1}, "soft"),
        ({"v": 1, "tags": ["t"], "id": 17}, "id"),
        ({"v": 1, "tags": ["t"], "origin": ["a"]}, "origin"),
        ({"v": 1, "tags": ["t"], "ts": "2026-01-01T00:00:00Z"}, "ts"),
        ({"v": 1, "tags": ["t"], "ts": 1.5}, "ts"),
        ({"v": 1, "tags": ["t"], "ts": True}, "ts"),
        ({"v": 1, "tags": ["t"], "ts": None}, "ts"),
    ],
)
def test_wrong_types_name_the_field(doc: dict[str, object], field: str) -> None:
    with pytest.raises(EventError) as caught:
        _parse(doc)
    assert caught.value.reason == Reason.WRONG_TYPE
    assert caught.value.message.startswith(field + " must be"), caught.value.message


def test_ts_accepts_an_integral_float_as_milliseconds() -> None:
    assert parse(b'{"v":1,"tags":["t"],"ts":1.7e12}').ts == 1_700_000_000_000


@pytest.mark.parametrize(
    ("doc", "reason", "field"),
    [
        ({"v": 1, "tags": [""]}, Reason.BAD_VALUE, "tags[0]"),
        ({"v": 1, "tags": ["a b"]}, Reason.BAD_VALUE, "tags[0]"),
        ({"v": 1, "tags": ["ok", "caf\u00e9"]}, Reason.BAD_VALUE, "tags[1]"),
        ({"v": 1, "tags": ["x" * 257]}, Reason.TOO_LONG, "tags[0]"),
        ({"v": 1, "urls": ["products/42"]}, Reason.BAD_VALUE, "urls[0]"),
        ({"v": 1, "urls": ["https://example.com/a"]}, Reason.BAD_VALUE, "urls[0]"),
        ({"v": 1, "urls": ["/a#top"]}, Reason.BAD_VALUE, "urls[0]"),
        ({"v": 1, "urls": ["/a b"]}, Reason.BAD_VALUE, "urls[0]"),
        ({"v": 1, "urls": ["/a\u0085"]}, Reason.BAD_VALUE, "urls[0]"),
        ({"v": 1, "urls": ["/" + "a" * MAX_URL_CHARS]}, Reason.TOO_LONG, "urls[0]"),
        ({"v": 1, "prefixes": ["/a?b=1"]}, Reason.BAD_VALUE, "prefixes[0]"),
        ({"v": 1, "prefixes": [""]}, Reason.BAD_VALUE, "prefixes[0]"),
        ({"v": 1, "flush": ""}, Reason.BAD_VALUE, "flush"),
        ({"v": 1, "flush": "my service"}, Reason.BAD_VALUE, "flush"),
        ({"v": 1, "flush": "s" * (MAX_FLUSH_CHARS + 1)}, Reason.TOO_LONG, "flush"),
        ({"v": 1, "tags": ["t"], "id": "a b"}, Reason.BAD_VALUE, "id"),
        ({"v": 1, "tags": ["t"], "id": "i" * (MAX_ID_CHARS + 1)}, Reason.TOO_LONG, "id"),
        ({"v": 1, "tags": ["t"], "origin": "a\tb"}, Reason.BAD_VALUE, "origin"),
        (
            {"v": 1, "tags": ["t"], "origin": "o" * (MAX_ORIGIN_CHARS + 1)},
            Reason.TOO_LONG,
            "origin",
        ),
        ({"v": 1, "tags": ["t"], "ts": -1}, Reason.BAD_VALUE, "ts"),
        ({"v": 1, "tags": ["t"], "ts": MAX_TS + 1}, Reason.BAD_VALUE, "ts"),
        ({"v": 1, "tags": ["t"] * (MAX_ITEMS + 1)}, Reason.TOO_MANY_ITEMS, "tags"),
    ],
)
def test_bad_values_name_the_field(doc: dict[str, object], reason: Reason, field: str) -> None:
    with pytest.raises(EventError) as caught:
        _parse(doc)
    assert caught.value.reason == reason
    assert caught.value.message.startswith(field + " "), caught.value.message


def test_limits_are_inclusive() -> None:
    event = _parse(
        {
            "v": 1,
            "tags": ["x" * 256, *(f"t{i}" for i in range(MAX_ITEMS - 1))],
            "urls": ["/" + "a" * (MAX_URL_CHARS - 1)],
            "flush": "s" * MAX_FLUSH_CHARS,
            "id": "i" * MAX_ID_CHARS,
            "origin": "o" * MAX_ORIGIN_CHARS,
            "ts": MAX_TS,
        }
    )
    assert len(event.tags) == MAX_ITEMS


def test_non_ascii_urls_and_origins_are_allowed() -> None:
    event = _parse({"v": 1, "urls": ["/caf\u00e9?q=\u00fc"], "origin": "r\u00e9plica 2"})
    assert event.urls == ("/caf\u00e9?q=\u00fc",)
    assert parse(encode(event)) == event


def test_arrays_collapse_duplicates_and_ignore_order() -> None:
    a = _parse({"v": 1, "tags": ["b", "a", "b"], "urls": ["/y", "/x"]})
    b = _parse({"v": 1, "tags": ["a", "b"], "urls": ["/x", "/y", "/x"]})
    assert a == b
    assert a.tags == ("a", "b")
    assert encode(a) == encode(b)
    assert event_id(a) == event_id(b)


def test_encode_is_canonical_json_that_parses_back_to_the_same_event() -> None:
    event = InvalidationEvent(
        tags=("t2", "t1"), urls=("/a?x=1",), soft=True, origin="cdc", ts=5, id="e"
    )
    data = encode(event)
    assert data == (
        b'{"id":"e","origin":"cdc","soft":true,"tags":["t1","t2"],"ts":5,"urls":["/a?x=1"],"v":1}'
    )
    assert parse(data) == event
    # Defaults are left out.
    assert encode(InvalidationEvent(flush="svc")) == b'{"flush":"svc","v":1}'


def test_encode_refuses_an_event_its_readers_would_refuse_as_too_large() -> None:
    urls = tuple(f"/{i:04d}" + "a" * (MAX_URL_CHARS - 6) for i in range(MAX_ITEMS))
    event = InvalidationEvent(urls=urls)
    with pytest.raises(EventError) as caught:
        encode(event)
    assert caught.value.reason == Reason.TOO_LARGE


def test_event_id_is_the_given_id_else_a_digest_of_the_canonical_form() -> None:
    assert event_id(InvalidationEvent(tags=("t",), id="abc")) == "abc"
    plain = InvalidationEvent(tags=("t",))
    assert event_id(plain).startswith("sha256:")
    assert len(event_id(plain)) == len("sha256:") + 64
    assert event_id(parse(encode(plain))) == event_id(plain)
    assert event_id(parse(b'{ "tags" : ["t"], "v" : 1, "zz": 0 }')) == event_id(plain)
    assert event_id(InvalidationEvent(tags=("t",), soft=True)) != event_id(plain)
    assert event_id(InvalidationEvent(tags=("t",), ts=1)) != event_id(plain)


def test_events_built_in_python_are_held_to_the_same_rules() -> None:
    with pytest.raises(EventError) as caught:
        InvalidationEvent()
    assert caught.value.reason == Reason.EMPTY
    with pytest.raises(EventError) as caught:
        InvalidationEvent(tags=("has space",))
    assert caught.value.reason == Reason.BAD_VALUE
    with pytest.raises(EventError) as caught:
        InvalidationEvent(urls="/a")  # type: ignore[arg-type]
    assert caught.value.reason == Reason.WRONG_TYPE
    with pytest.raises(EventError) as caught:
        InvalidationEvent(tags=("t",), ts=-5)
    assert caught.value.reason == Reason.BAD_VALUE


def test_flush_all() -> None:
    assert InvalidationEvent(flush="*").flushes_all
    assert not InvalidationEvent(flush="catalog").flushes_all
    assert not InvalidationEvent(tags=("*",)).flushes_all


def test_an_event_error_is_a_value_error_with_reason_and_message() -> None:
    error = EventError(Reason.EMPTY, "nothing")
    assert isinstance(error, ValueError)
    assert str(error) == "empty: nothing"
    assert error.reason == "empty"

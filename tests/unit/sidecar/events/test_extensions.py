"""The extension fields keys, routes and key_prefixes: read, written, planned, and soft
refused with key purges."""

from __future__ import annotations

import pytest

from sidecar.engine.purge import ROUTE_TAG_PREFIX
from sidecar.events import (
    EventError,
    InvalidationEvent,
    PurgeKey,
    PurgeKeyPrefix,
    PurgeRoute,
    PurgeTag,
    Reason,
    encode,
    parse,
    plan,
)
from sidecar.events.extensions import MAX_ROUTE_CHARS, ROUTE_TAG_CHARS
from sidecar.events.tagging import MAX_TAG_CHARS


def test_extension_fields_round_trip_in_canonical_form() -> None:
    event = InvalidationEvent(
        keys=("v1:r:b", "v1:r:a", "v1:r:a"), routes=("v1:r:",), key_prefixes=("v1:",)
    )
    assert event.keys == ("v1:r:a", "v1:r:b")
    data = encode(event)
    assert data == b'{"key_prefixes":["v1:"],"keys":["v1:r:a","v1:r:b"],"routes":["v1:r:"],"v":1}'
    assert parse(data) == event


def test_each_extension_alone_is_something_to_purge() -> None:
    for field in ("keys", "routes", "key_prefixes"):
        assert parse(f'{{"v":1,"{field}":["v1:x"]}}'.encode())


@pytest.mark.parametrize("field", ["keys", "key_prefixes"])
def test_soft_with_a_key_purge_is_refused_with_a_clear_reason(field: str) -> None:
    with pytest.raises(EventError) as caught:
        parse(f'{{"v":1,"soft":true,"{field}":["v1:x"],"tags":["t"]}}'.encode())
    assert caught.value.reason == Reason.SOFT_KEY_PURGE
    assert f"soft with {field}" in caught.value.message


def test_soft_with_routes_is_accepted_and_planned_soft() -> None:
    event = parse(b'{"v":1,"soft":true,"routes":["v1:r:"]}')
    assert plan(event) == [PurgeRoute("v1:r:", True, "routes[0]")]


def test_plan_puts_tags_first_then_routes_keys_and_key_prefixes() -> None:
    event = InvalidationEvent(tags=("t",), routes=("v1:r:",), keys=("k",), key_prefixes=("p",))
    assert plan(event) == [
        PurgeTag("t", False, "tags[0]"),
        PurgeRoute("v1:r:", False, "routes[0]"),
        PurgeKey("k", "keys[0]"),
        PurgeKeyPrefix("p", "key_prefixes[0]"),
    ]
    assert not any(op.soft for op in plan(event))


def test_a_route_fits_the_engines_route_tag() -> None:
    assert len(ROUTE_TAG_PREFIX) == ROUTE_TAG_CHARS
    assert MAX_ROUTE_CHARS + len(ROUTE_TAG_PREFIX) == MAX_TAG_CHARS


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (b'{"v":1,"keys":["a\\u0001"]}', Reason.BAD_VALUE),
        (b'{"v":1,"keys":["\\ud800"]}', Reason.BAD_VALUE),
        (b'{"v":1,"routes":["a b"]}', Reason.BAD_VALUE),
        (b'{"v":1,"key_prefixes":"v1:"}', Reason.WRONG_TYPE),
        (b'{"v":1,"keys":[],"routes":[],"key_prefixes":[]}', Reason.EMPTY),
    ],
)
def test_bad_extension_values_are_refused(doc: bytes, reason: Reason) -> None:
    with pytest.raises(EventError) as caught:
        parse(doc)
    assert caught.value.reason == reason


def test_key_prefixes_are_capped_per_event() -> None:
    from sidecar.events import EventError, InvalidationEvent, Reason  # noqa: PLC0415
    from sidecar.events.extensions import MAX_KEY_PREFIXES  # noqa: PLC0415

    prefixes = tuple(f"v1:{i}:" for i in range(MAX_KEY_PREFIXES))
    assert len(InvalidationEvent(key_prefixes=prefixes).key_prefixes) == MAX_KEY_PREFIXES
    with pytest.raises(EventError) as caught:
        InvalidationEvent(key_prefixes=(*prefixes, "v1:x:"))
    assert caught.value.reason == Reason.TOO_MANY_ITEMS
    assert "key_prefixes" in caught.value.message


def test_the_content_digest_ignores_id_origin_and_ts_only() -> None:
    from sidecar.events import InvalidationEvent, content_digest  # noqa: PLC0415

    a = InvalidationEvent(tags=("t",), id="x", origin="n", ts=1)
    assert content_digest(a) == content_digest(InvalidationEvent(tags=("t",), id="y"))
    assert content_digest(a) != content_digest(InvalidationEvent(tags=("t",), soft=True))
    assert content_digest(a) != content_digest(InvalidationEvent(tags=("u",)))

"""Debezium envelopes to row changes, and through the translator to events."""

from __future__ import annotations

import json
import logging
from typing import Any
from unittest import mock

import pytest

from sidecar.cdc.changes import Op
from sidecar.cdc.debezium import EnvelopeError, parse_envelope, text_of
from sidecar.cdc.mapping import TableMap, TableRule, Template
from sidecar.cdc.translate import CdcStats, Translator
from sidecar.events import parse


def env(
    op: str, before: Any = None, after: Any = None, table: str = "products", **more: Any
) -> bytes:
    payload = {"op": op, "before": before, "after": after,
               "source": {"schema": "public", "table": table, "ts_ms": 1000}, **more}  # fmt: skip
    return json.dumps(payload).encode()


def test_update_with_and_without_the_schema_wrapper() -> None:
    plain = parse_envelope(env("u", after={"id": 42, "sku": "a"}), b'{"id": 42}')
    wrapped_value = json.dumps(
        {
            "schema": {"type": "struct"},
            "payload": json.loads(env("u", after={"id": 42, "sku": "a"})),
        }
    )
    wrapped = parse_envelope(wrapped_value.encode(), b'{"schema": {}, "payload": {"id": 42}}')
    assert plain is not None and wrapped is not None
    assert plain.change == wrapped.change
    assert plain.change.op is Op.UPDATE and plain.change.key_columns == ("id",)
    assert plain.change.images == ({"id": "42", "sku": "a"},)
    assert plain.ts == 1000


def test_ops_and_images() -> None:
    delete = parse_envelope(env("d", before={"id": 5}), None)
    assert delete is not None and delete.change.images == ({"id": "5"},)
    assert delete.change.key_columns == ()  # no message key: the rule's key is used
    full = parse_envelope(env("u", before={"id": 1, "sku": "x"}, after={"id": 1, "sku": "y"}), None)
    assert full is not None and [i["sku"] for i in full.change.images] == ["x", "y"]
    snap = parse_envelope(env("r", after={"id": 3}), None)
    assert snap is not None and snap.change.op is Op.INSERT
    trunc = parse_envelope(env("t"), None)
    assert trunc is not None and trunc.change.op is Op.TRUNCATE and trunc.change.images == ()


def test_a_tombstone_is_none() -> None:
    assert parse_envelope(None, b'{"id": 5}') is None


@pytest.mark.parametrize(
    ("value", "key", "reason"),
    [
        (b"{not json", None, "malformed_json"),
        (b"\xff\xfe", None, "malformed_json"),
        (b"[1]", None, "not_an_envelope"),
        (env("m"), None, "bad_op"),
        (json.dumps({"op": "c", "after": {"id": 1}}).encode(), None, "bad_field"),
        (env("c", after=None), None, "bad_field"),
        (env("d", before=[1]), None, "bad_field"),
        (env("c", after={"id": 1}), b"[1]", "bad_key"),
        (env("c", after={"id": 1}), b"{nope", "malformed_json"),
        (env("c", after={"id": 1}), b'{"id": NaN}', "malformed_json"),
        (
            b'{"op": "c", "after": {"id": Infinity}, "source": {"schema": "s", "table": "t"}}',
            None,
            "malformed_json",
        ),
        (
            b'{"op": "c", "after": {"id": -Infinity}, "source": {"schema": "s", "table": "t"}}',
            None,
            "malformed_json",
        ),
        (
            b'{"op": "c", "after": {"id": 1e999}, "source": {"schema": "s", "table": "t"}}',
            None,
            "malformed_json",
        ),
    ],
)
def test_malformed_envelopes(value: bytes, key: bytes | None, reason: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        parse_envelope(value, key)
    assert info.value.reason == reason


def test_values_as_text() -> None:
    assert [text_of(v) for v in (1, 2.0, 2.5, True, False, "s", None)] == [
        "1", "2", "2.5", "t", "f", "s", None
    ]  # fmt: skip
    assert text_of({"a": [1]}) == '{"a":[1]}'


def test_translator_maps_counts_and_skips_unknown_tables(caplog: pytest.LogCaptureFixture) -> None:
    stats = CdcStats()
    translator = Translator(TableMap([TableRule("products", key=("id",))]), "out", stats)
    known = parse_envelope(env("d", before={"id": 5}), None)
    unknown = parse_envelope(env("c", after={"id": 1}, table="orders"), None)
    assert known is not None and unknown is not None
    assert not translator.knows(unknown.change)
    out = translator.messages(
        [known.change, unknown.change],
        origin="cdc:x",
        ts=1000,
        base="dbz:t:0:9",
        key=b"t",
        where="topic t partition 0 offset 9",
    )
    [message] = out
    event = parse(message.value)
    assert (event.tags, event.id, event.origin, event.ts) == (
        ("products:5",),
        "dbz:t:0:9:0",
        "cdc:x",
        1000,
    )
    assert (stats.changes, stats.unknown_table, stats.events, stats.tags) == (2, 1, 1, 1)
    assert "public.orders" in caplog.text and "offset 9" in caplog.text
    assert (
        translator.messages([unknown.change], origin="o", ts=None, base="b", key=b"", where="w")
        == []
    )


def test_finite_floats_still_parse() -> None:
    parsed = parse_envelope(env("c", after={"id": 1.5e3, "p": -0.25}), None)
    assert parsed is not None and parsed.change.images == ({"id": "1500", "p": "-0.25"},)


def test_per_change_warnings_are_rate_limited_with_a_held_back_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A flood of unmapped tables and unrenderable templates: every one counted, one
    warning line per kind per 5 s, the next line says how many were held back."""
    stats = CdcStats()
    rule = TableRule("products", (Template.parse("p:{nosuchcol}"), Template.parse("id:{id}")))
    translator = Translator(TableMap([rule]), "out", stats)
    known = parse_envelope(env("c", after={"id": 1}), None)
    unknown = parse_envelope(env("c", after={"id": 1}, table="orders"), None)
    assert known is not None and unknown is not None
    clock = [1000.0]
    with (
        caplog.at_level(logging.WARNING),
        mock.patch("sidecar.cdc.translate.time.monotonic", lambda: clock[0]),
    ):
        for i in range(500):
            out = translator.messages(
                [known.change, unknown.change], origin="o", ts=None, base=f"b{i}", key=b"",
                where=f"offset {i}",
            )  # fmt: skip
            assert [parse(m.value).tags for m in out] == [("id:1",)]  # the rest still purges
        assert (stats.unknown_table, stats.tag_problems) == (500, 500)
        assert len(caplog.records) == 2  # one line per kind
        clock[0] += 5.0
        translator.messages([unknown.change], origin="o", ts=None, base="z", key=b"", where="w")
    last = caplog.records[-1]
    assert len(caplog.records) == 3 and "[499 similar lines held back]" in last.getMessage()
    assert getattr(last, "strata.suppressed") == 499

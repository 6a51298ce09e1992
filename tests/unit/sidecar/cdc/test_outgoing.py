"""Events of a transaction: split to fit, ids deterministic from slot + LSN."""

from __future__ import annotations

from sidecar.cdc.outgoing import debezium_event_base, events_for, format_lsn, slot_event_base
from sidecar.events import encode, parse
from sidecar.events.event import MAX_ID_CHARS, MAX_ITEMS


def test_ids_are_deterministic_from_slot_and_lsn() -> None:
    assert format_lsn(0x16_B374D848) == "16/B374D848"
    base = slot_event_base("strata_cdc", 0x16_B374D848)
    assert base == "cdc:strata_cdc:16/B374D848"
    first = events_for(["b:1", "a:2", "a:2"], origin="cdc:strata_cdc", ts=5, base=base)
    again = events_for(["b:1", "a:2"], origin="cdc:strata_cdc", ts=5, base=base)
    assert [encode(e) for e in first] == [encode(e) for e in again]
    [event] = first
    assert event.id == "cdc:strata_cdc:16/B374D848:0" and event.tags == ("a:2", "b:1")
    assert parse(encode(event)) == event
    assert slot_event_base("strata_cdc", 0x16_B374D849) != base


def test_a_large_transaction_is_split_into_numbered_events() -> None:
    tags = [f"products:{i}" for i in range(2 * MAX_ITEMS + 5)]
    events = events_for(tags, origin="o", ts=None, base="cdc:s:0/1")
    assert [len(e.tags) for e in events] == [MAX_ITEMS, MAX_ITEMS, 5]
    assert [e.id for e in events] == ["cdc:s:0/1:0", "cdc:s:0/1:1", "cdc:s:0/1:2"]
    assert sorted(t for e in events for t in e.tags) == sorted(tags)
    assert events_for([], origin="o", ts=None, base="b") == []


def test_long_debezium_topics_still_make_valid_ids() -> None:
    base = debezium_event_base("t" * 249, 3, 12345)
    assert len(base) + 8 <= MAX_ID_CHARS
    assert base != debezium_event_base("t" * 248 + "u", 3, 12345)
    [event] = events_for(["x:1"], origin="o", ts=None, base=base)
    assert parse(encode(event)).id == event.id

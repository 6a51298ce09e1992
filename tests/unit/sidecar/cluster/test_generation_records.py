"""The string format of Redis generation records, old and new, and `judge` over it."""

from __future__ import annotations

from sidecar.cluster.generation_scripts import encode_record, parse_record, record_value
from sidecar.engine.generations import MAX_SOFT, Generation, Verdict, judge, soft_replaced


def test_a_bare_nonce_written_by_older_builds_reads_as_before() -> None:
    assert parse_record(b"-42") == (-42, ())
    assert record_value(b"-42") == -42
    assert encode_record(-42) == "-42"


def test_absent_counters_and_garbage_read_as_no_record() -> None:
    for raw in (None, b"7", b"", b"-x", b"-4 -5@x", "nonsense"):
        assert parse_record(raw) == (0, ())


def test_soft_values_round_trip() -> None:
    soft = ((-5, 1_700_000_000_000), (-6, 1_699_999_999_000))
    text = encode_record(-4, soft)
    assert text == "-4 -5@1700000000000 -6@1699999999000"
    assert parse_record(text.encode()) == (-4, soft)
    assert record_value(text.encode()) == -4


def test_the_soft_list_is_bounded_newest_first() -> None:
    soft: tuple[tuple[int, int], ...] = ()
    for i in range(MAX_SOFT + 3):
        soft = soft_replaced(-(i + 1), soft, i)
    assert len(soft) == MAX_SOFT
    assert soft[0] == (-(MAX_SOFT + 3), MAX_SOFT + 2)


def test_judge() -> None:
    now = (Generation(-1, ((-2, 100), (-3, 50))), Generation(-9))
    assert judge((-1, -9), now) == (Verdict.CURRENT, 0)
    assert judge((-2, -9), now) == (Verdict.SOFT, 100)
    assert judge((-3, -9), now) == (Verdict.SOFT, 50)
    assert judge((-4, -9), now) == (Verdict.PURGED, 0)
    assert judge((-2, -8), now) == (Verdict.PURGED, 0)  # any hard mismatch wins
    assert judge((-1,), now) == (Verdict.PURGED, 0)  # another length: an older stamp
    both = (Generation(-1, ((-2, 100),)), Generation(-9, ((-8, 70),)))
    assert judge((-2, -8), both) == (Verdict.SOFT, 70)  # the earliest soft purge

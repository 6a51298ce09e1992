"""pgoutput messages built byte by byte, decoded, and assembled into transactions."""

from __future__ import annotations

import struct

import pytest

from sidecar.cdc.changes import Op, Transaction, Transactions
from sidecar.cdc.pgoutput import (
    PG_EPOCH_MS,
    UNCHANGED,
    Begin,
    Commit,
    Delete,
    Ignored,
    Insert,
    PgOutputError,
    Relation,
    Truncate,
    Update,
    decode,
)


def s(text: str) -> bytes:
    return text.encode() + b"\0"


def tup(*values: str | None) -> bytes:
    out = struct.pack(">h", len(values))
    for v in values:
        if v is None:
            out += b"n"
        elif v == "<u>":
            out += b"u"
        else:
            raw = v.encode()
            out += b"t" + struct.pack(">i", len(raw)) + raw
    return out


def begin(xid: int = 7, final_lsn: int = 0x100) -> bytes:
    return b"B" + struct.pack(">QqI", final_lsn, 1_000_000, xid)


def commit(end_lsn: int = 0x1_0000_0200, micros: int = 2_000_000) -> bytes:
    return b"C" + struct.pack(">bQQq", 0, 0x1F0, end_lsn, micros)


def relation(oid: int = 16400, schema: str = "public", name: str = "products") -> bytes:
    cols = [(1, "id"), (0, "sku"), (1, "region"), (0, "body")]
    body = struct.pack(">I", oid) + s(schema) + s(name) + b"d" + struct.pack(">h", len(cols))
    for flags, col in cols:
        body += struct.pack(">b", flags) + s(col) + struct.pack(">Ii", 23, -1)
    return b"R" + body


def insert(*values: str | None, oid: int = 16400) -> bytes:
    return b"I" + struct.pack(">I", oid) + b"N" + tup(*values)


def test_begin_commit_relation() -> None:
    assert decode(begin()) == Begin(0x100, 1_000_000, 7)
    assert decode(commit()) == Commit(0, 0x1F0, 0x1_0000_0200, 2_000_000)
    rel = decode(relation())
    assert isinstance(rel, Relation)
    assert (rel.schema, rel.name, rel.replica_identity) == ("public", "products", "d")
    assert [(c.name, c.key) for c in rel.columns] == [
        ("id", True), ("sku", False), ("region", True), ("body", False)
    ]  # fmt: skip
    assert decode(relation(schema="")).schema == "pg_catalog"  # type: ignore[union-attr]


def test_row_messages() -> None:
    assert decode(insert("42", None, "eu", "x")) == Insert(16400, ("42", None, "eu", "x"))
    old_key = b"K" + tup("6", None, "eu", None)
    upd = decode(b"U" + struct.pack(">I", 16400) + old_key + b"N" + tup("600", "a", "eu", "<u>"))
    assert upd == Update(16400, "K", ("6", None, "eu", None), ("600", "a", "eu", UNCHANGED))
    plain = decode(b"U" + struct.pack(">I", 16400) + b"N" + tup("1", "a", "eu", "b"))
    assert plain == Update(16400, "", None, ("1", "a", "eu", "b"))
    assert decode(b"D" + struct.pack(">I", 16400) + b"K" + tup("5", None, "eu", None)) == Delete(
        16400, "K", ("5", None, "eu", None)
    )
    trunc = b"T" + struct.pack(">ib", 2, 1) + struct.pack(">II", 16400, 16401)
    assert decode(trunc) == Truncate(1, (16400, 16401))
    assert decode(b"O" + struct.pack(">Q", 5) + s("origin")) == Ignored("O")
    assert decode(b"Y" + struct.pack(">I", 5) + s("public") + s("mood")) == Ignored("Y")


def test_non_utf8_text_is_kept_as_surrogate_escapes() -> None:
    raw = b"I" + struct.pack(">I", 1) + b"N" + struct.pack(">h", 1) + b"t\0\0\0\x02\xff\xfe"
    message = decode(raw)
    assert isinstance(message, Insert)
    assert message.new[0] == "\udcff\udcfe"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (b"Z123", "unknown message type 'Z'"),
        (b"S" + struct.pack(">I", 1), "unknown message type 'S'"),  # streaming: version 2
        (begin()[:-1], "cut short"),
        (begin() + b"x", "left over"),
        (b"R" + struct.pack(">I", 1) + b"public", "unterminated string"),
        (b"I" + struct.pack(">I", 1) + b"X" + tup("1"), "expected 'N'"),
        (b"D" + struct.pack(">I", 1) + b"N" + tup("1"), "expected 'K' or 'O'"),
        (b"I" + struct.pack(">I", 1) + b"N" + struct.pack(">h", 1) + b"q", "unknown value kind"),
        (b"I" + struct.pack(">I", 1) + b"N" + struct.pack(">h", 1) + b"t\0\0\0\x09ab", "cut"),
    ],
)
def test_bad_messages_are_refused(data: bytes, words: str) -> None:
    with pytest.raises(PgOutputError, match=words):
        decode(data)


def feed_all(txs: Transactions, *messages: bytes) -> list[Transaction]:
    done = [txs.feed(decode(m)) for m in messages]
    return [t for t in done if t is not None]


def test_transactions_carry_images_keys_and_commit_time() -> None:
    txs = Transactions()
    key_change = (
        b"U" + struct.pack(">I", 16400) + b"K" + tup("6", None, "eu", None)
        + b"N" + tup("600", "a", "eu", "<u>")
    )  # fmt: skip
    delete = b"D" + struct.pack(">I", 16400) + b"K" + tup("5", None, "eu", None)
    trunc = b"T" + struct.pack(">ib", 1, 0) + struct.pack(">I", 16400)
    [txn] = feed_all(
        txs, begin(), relation(), insert("42", "s", "eu", "b"), key_change, delete, trunc, commit()
    )
    assert (txn.xid, txn.end_lsn, txn.commit_time_ms) == (7, 0x1_0000_0200, PG_EPOCH_MS + 2000)
    ins, upd, dele, tr = txn.changes
    assert ins.op is Op.INSERT and ins.key_columns == ("id", "region")
    assert ins.images == ({"id": "42", "sku": "s", "region": "eu", "body": "b"},)
    assert upd.op is Op.UPDATE
    # the old key (key columns only), then the new row without the unchanged TOAST column
    assert upd.images == ({"id": "6", "region": "eu"}, {"id": "600", "sku": "a", "region": "eu"})
    assert dele.images == ({"id": "5", "region": "eu"},)
    assert tr.op is Op.TRUNCATE and tr.images == ()
    assert not txs.open


def test_full_identity_fills_unchanged_toast_from_the_old_row() -> None:
    txs = Transactions()
    upd = (
        b"U" + struct.pack(">I", 16400) + b"O" + tup("1", "old", "eu", "body")
        + b"N" + tup("1", "new", "eu", "<u>")
    )  # fmt: skip
    [txn] = feed_all(txs, begin(), relation(), upd, commit())
    old, new = txn.changes[0].images
    assert old["sku"] == "old" and new == {"id": "1", "sku": "new", "region": "eu", "body": "body"}


def test_protocol_violations_are_errors() -> None:
    with pytest.raises(PgOutputError, match="outside a transaction"):
        Transactions().feed(decode(insert("1", None, None, None)))
    txs = Transactions()
    txs.feed(decode(begin()))
    with pytest.raises(PgOutputError, match="before its Relation"):
        txs.feed(decode(insert("1", None, None, None)))
    with pytest.raises(PgOutputError, match="inside xid"):
        txs.feed(decode(begin(8)))
    txs.reset()
    txs.feed(decode(relation()))
    txs.feed(decode(begin()))
    with pytest.raises(PgOutputError, match="3 values for 4 columns"):
        txs.feed(decode(insert("1", None, None)))

"""`strata cdc` against the real PostgreSQL (wal_level=logical) and Tansu: row changes become
v1 events on the topic, changes made while it is stopped are not lost, a broker that stops
and comes back loses nothing, Debezium envelopes become events.

Each test has its own schema, slot, publication and topics (unique names), and drops its
slot, publication and schema at the end, even on failure.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from sidecar.cdc.cli import CdcOptions, run
from sidecar.cdc.mapping import TableRule, Template, parse_map
from sidecar.cluster.kafka_bus import ensure_topic
from tests.integration.servers import service
from tests.support.kafka import PrivateTansu

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[2]


def unique() -> str:
    return uuid.uuid4().hex[:10]


class Db:
    """A schema of this test with a `products` table (ids 1..50 and 42), plus cleanup."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.name = f"cdc_{unique()}"
        self.slot = f"strata_test_{unique()}"
        self.conn = psycopg.connect(dsn, autocommit=True)
        # The services' server defaults to synchronous_commit=off; a slot sees a commit
        # once its WAL is flushed (up to wal_writer_delay later): wait for the flush here.
        self.conn.execute("SET synchronous_commit = on")
        self.conn.execute(f"CREATE SCHEMA {self.name}")
        self.conn.execute(
            f"CREATE TABLE {self.name}.products (id int PRIMARY KEY, sku text, price int)"
        )
        self.conn.execute(
            f"INSERT INTO {self.name}.products"
            " SELECT i, 'sku-' || i, i FROM generate_series(1, 60) i"
        )

    def sql(self, query: str, *args: object) -> list[tuple[Any, ...]]:
        cur = self.conn.execute(query.replace("@", self.name), args)
        return cur.fetchall() if cur.description else []

    def slot_lsn(self) -> str | None:
        rows = self.sql(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
            self.slot,
        )
        return rows[0][0] if rows else None

    def cleanup(self) -> None:
        for query in (
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            " WHERE slot_name = %s",
        ):
            for _ in range(50):  # a reader still stopping holds the slot for a moment
                try:
                    self.conn.execute(query, (self.slot,))
                    break
                except psycopg.errors.ObjectInUse:
                    time.sleep(0.1)
        self.conn.execute(f"DROP PUBLICATION IF EXISTS {self.slot}")
        self.conn.execute(f"DROP PUBLICATION IF EXISTS {self.slot}_ins")
        self.conn.execute(f"DROP SCHEMA IF EXISTS {self.name} CASCADE")
        self.conn.close()


@pytest.fixture
def db() -> Iterator[Db]:
    made = Db(service("STRATA_TEST_POSTGRES_DSN"))
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture
def bootstrap() -> str:
    return service("STRATA_TEST_KAFKA_BOOTSTRAP")


def new_topic(bootstrap: str, prefix: str) -> str:
    topic = f"strata.test.cdc-{prefix}.{unique()}"
    assert ensure_topic(bootstrap, topic, 1)
    return topic


class TopicReader:
    """Reads a one-partition topic from its beginning (explicit assignment: no group join)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"reader-{unique()}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
                "auto.offset.reset": "earliest",
            }
        )
        self.consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        self.got: list[dict[str, Any]] = []
        self.arrived: list[float] = []
        self.headers: list[Any] = []

    def read(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.got) < count:
            assert time.monotonic() < deadline, f"{len(self.got)} of {count}: {self.got}"
            message = self.consumer.poll(0.05)
            if message is None or message.error() is not None:
                continue
            self.arrived.append(time.perf_counter())
            self.headers.append(message.headers())
            self.got.append(json.loads(message.value() or b"null"))
        return self.got

    def quiet(self, seconds: float) -> None:
        """Nothing more arrives within `seconds`."""
        before = len(self.got)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            message = self.consumer.poll(0.05)
            if message is not None and message.error() is None:
                self.got.append(json.loads(message.value() or b"null"))
        assert len(self.got) == before, self.got[before:]

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture
def readers() -> Iterator[list[TopicReader]]:
    made: list[TopicReader] = []
    yield made
    for reader in made:
        reader.close()


class Running:
    """`strata cdc` (the `run` API) in a thread of this test."""

    def __init__(self, opts: CdcOptions) -> None:
        self.stop = threading.Event()
        self.code: int | None = None
        self.thread = threading.Thread(target=self._main, args=(opts,), daemon=True)
        self.thread.start()

    def _main(self, opts: CdcOptions) -> None:
        self.code = run(opts, self.stop)

    def finish(self, timeout: float = 20.0) -> int | None:
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "cdc did not stop"
        return self.code


def options(db: Db, bootstrap: str, topic: str, **more: Any) -> CdcOptions:
    fields: dict[str, Any] = {
        "dsn": db.dsn,
        "slot": db.slot,
        "publication": db.slot,
        "rules": (parse_map(f"{db.name}.products=products:{{id}}"),),
        "kafka_bootstrap": bootstrap,
        "topic": topic,
        "retry_ms": 200,
        **more,
    }
    return CdcOptions(**fields)


def wait_until(check: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def once(opts: CdcOptions) -> int:
    return run(CdcOptions(**{**_fields(opts), "once": True}), threading.Event())


def _fields(opts: CdcOptions) -> dict[str, Any]:
    return {f: getattr(opts, f) for f in opts.__dataclass_fields__}


def tags_of(events: list[dict[str, Any]]) -> list[str]:
    return sorted(tag for event in events for tag in event.get("tags", []))


def test_an_update_of_products_42_publishes_tag_products_42(
    db: Db, bootstrap: str, readers: list[TopicReader]
) -> None:
    topic = new_topic(bootstrap, "update")
    reader = TopicReader(bootstrap, topic)
    readers.append(reader)
    cdc = Running(options(db, bootstrap, topic))
    try:
        wait_until(db.slot_lsn)
        before_ms = int(time.time() * 1000)
        db.sql("UPDATE @.products SET price = price + 1 WHERE id = 42")
        [event] = reader.read(1)
    finally:
        assert cdc.finish() == 0
    assert event["tags"] == ["products:42"]
    assert event["v"] == 1 and event["origin"] == f"cdc:{db.slot}"
    assert event["id"].startswith(f"cdc:{db.slot}:") and event["id"].endswith(":0")
    assert before_ms - 5000 <= event["ts"] <= int(time.time() * 1000) + 5000
    reader.quiet(0.5)


def test_a_change_made_while_stopped_is_delivered_at_the_next_start(
    db: Db, bootstrap: str, readers: list[TopicReader]
) -> None:
    topic = new_topic(bootstrap, "stopped")
    opts = options(db, bootstrap, topic)
    assert once(opts) == 0  # creates the publication and the slot; nothing to send
    db.sql("UPDATE @.products SET price = 0 WHERE id = 7")  # nothing is running now
    db.sql("UPDATE @.products SET price = 0 WHERE id IN (8, 9)")
    reader = TopicReader(bootstrap, topic)
    readers.append(reader)
    reader.quiet(0.3)
    assert once(opts) == 0
    events = reader.read(2)
    assert [e["tags"] for e in events] == [["products:7"], ["products:8", "products:9"]]
    assert once(opts) == 0  # the slot moved: nothing is sent twice
    reader.quiet(0.5)


def test_delete_insert_key_change_and_truncate(
    db: Db, bootstrap: str, readers: list[TopicReader]
) -> None:
    topic = new_topic(bootstrap, "kinds")
    rule = TableRule(
        f"{db.name}.products",
        (Template.parse("products:{id}"), Template.parse("sku:{sku}")),
        truncate_tags=("products",),
    )
    opts = options(db, bootstrap, topic, rules=(rule,))
    assert once(opts) == 0
    db.sql("DELETE FROM @.products WHERE id = 5")
    db.sql("UPDATE @.products SET id = 600 WHERE id = 6")
    db.sql("INSERT INTO @.products VALUES (700, 'new', 1)")
    db.sql("UPDATE @.products SET sku = NULL WHERE id = 11")
    db.sql("TRUNCATE @.products")
    reader = TopicReader(bootstrap, topic)
    readers.append(reader)
    assert once(opts) == 0
    events = reader.read(5)
    assert [e["tags"] for e in events] == [
        ["products:5"],  # the old key only: sku is not in a DELETE without REPLICA IDENTITY FULL
        ["products:6", "products:600", "sku:sku-6"],
        ["products:700", "sku:new"],
        ["products:11"],  # a NULL makes no tag
        ["products"],
    ]
    assert len({e["id"] for e in events}) == 5


def test_the_default_tag_of_a_table_on_the_search_path(
    db: Db, bootstrap: str, readers: list[TopicReader]
) -> None:
    table = f"cdc_items_{unique()}"
    db.sql(f"CREATE TABLE public.{table} (a int, b int, PRIMARY KEY (a, b))")
    try:
        topic = new_topic(bootstrap, "default")
        opts = options(db, bootstrap, topic, rules=(TableRule(table),))
        assert once(opts) == 0
        db.sql(f"INSERT INTO public.{table} VALUES (7, 3)")
        reader = TopicReader(bootstrap, topic)
        readers.append(reader)
        assert once(opts) == 0
        assert reader.read(1)[0]["tags"] == [f"{table}:7,3"]
    finally:
        db.sql(f"DROP PUBLICATION IF EXISTS {db.slot}")
        db.sql(f"DROP TABLE public.{table}")


def test_a_broker_down_mid_run_loses_nothing(
    db: Db, readers: list[TopicReader], private_tansu: PrivateTansu
) -> None:
    tansu = private_tansu
    tansu.start()
    topic = new_topic(tansu.bootstrap, "down")
    cdc = Running(options(db, tansu.bootstrap, topic))
    try:
        wait_until(db.slot_lsn)
        db.sql("UPDATE @.products SET price = 1 WHERE id = 1")
        first = TopicReader(tansu.bootstrap, topic)
        assert first.read(1)[0]["tags"] == ["products:1"]
        first.close()
        tansu.stop()
        for i in (2, 3, 4):
            db.sql("UPDATE @.products SET price = 1 WHERE id = %s", i)
        time.sleep(1.5)  # cdc retries meanwhile; the slot must not move past them
        held = db.slot_lsn()
        tansu.start()  # memory storage: the topic is gone, cdc creates it again
        reader = TopicReader(tansu.bootstrap, topic)
        readers.append(reader)
        events = reader.read(3, timeout=40)
        assert [e["tags"] for e in events] == [["products:2"], ["products:3"], ["products:4"]]
        wait_until(lambda: db.slot_lsn() != held)
    finally:
        assert cdc.finish() == 0


def envelope(op: str, before: Any, after: Any, table: str, wrap: bool = False) -> bytes:
    payload = {
        "op": op,
        "before": before,
        "after": after,
        "source": {"schema": "public", "table": table, "ts_ms": 1767225600000},
        "ts_ms": 1767225600123,
    }
    return json.dumps({"schema": {}, "payload": payload} if wrap else payload).encode()


def test_debezium_envelopes_become_events(bootstrap: str, readers: list[TopicReader]) -> None:
    source = new_topic(bootstrap, "dbz")
    dead = new_topic(bootstrap, "dbz-dlq")
    topic = new_topic(bootstrap, "dbz-out")
    producer = Producer({"bootstrap.servers": bootstrap})
    unmapped = envelope("c", None, {"id": 1}, "orders")
    for key, value in (
        (b'{"id": 42}', envelope("u", None, {"id": 42, "sku": "a"}, "products")),
        (b'{"schema": {}, "payload": {"id": 5}}', envelope("d", {"id": 5}, None, "products", True)),
        (b'{"id": 5}', None),  # the tombstone after a delete
        (None, b"{not json"),
        (b'{"id": 1}', unmapped),
    ):
        producer.produce(source, value=value, key=key)
    assert producer.flush(10) == 0
    group = f"strata-cdc-test-{unique()}"
    opts = CdcOptions(
        rules=(TableRule("products"),),
        kafka_bootstrap=bootstrap,
        topic=topic,
        debezium_topics=(source,),
        debezium_group=group,
        dead_letter_topic=dead,
        retry_ms=200,
        once=True,
    )
    assert run(opts, threading.Event()) == 0
    reader = TopicReader(bootstrap, topic)
    readers.append(reader)
    events = reader.read(2)
    assert [e["tags"] for e in events] == [["products:42"], ["products:5"]]
    assert events[0]["id"] == f"dbz:{source}:0:0:0" and events[0]["ts"] == 1767225600000
    copies = [(value, headers["strata-dlq-reason"]) for value, headers in _raw(dead, bootstrap, 2)]
    assert copies == [(b"{not json", b"malformed_json"), (unmapped, b"unknown_table")]
    assert run(opts, threading.Event()) == 0  # offsets were committed: nothing again
    reader.quiet(0.5)


def _raw(topic: str, bootstrap: str, count: int) -> list[tuple[bytes, dict[str, bytes]]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"raw-{unique()}"})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got: list[tuple[bytes, dict[str, bytes]]] = []
    deadline = time.monotonic() + 15
    try:
        while len(got) < count and time.monotonic() < deadline:
            m = consumer.poll(0.05)
            if m is not None and m.error() is None:
                headers = {}
                raw = m.headers() or []
                for name, value in raw.items() if isinstance(raw, dict) else raw:
                    headers[name] = value if isinstance(value, bytes) else b""
                got.append((m.value() or b"", headers))
    finally:
        consumer.close()
    return got


def test_sigterm_stops_the_command_cleanly_and_logs_ecs_without_the_password(
    db: Db, bootstrap: str
) -> None:
    topic = new_topic(bootstrap, "sigterm")
    dsn = db.dsn.replace("postgresql://postgres@", "postgresql://postgres:hunter22@")
    argv = [sys.executable, "-c", "import sys; from sidecar.cdc.cli import main; "
            "sys.exit(main(sys.argv[1:]))", "--dsn", dsn, "--slot", db.slot,
            "--map", f"{db.name}.products=products:{{id}}", "--kafka-bootstrap", bootstrap,
            "--topic", topic]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    env["PGPASSWORD"] = ""
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(db.slot_lsn, timeout=30)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    actions = [line.get("event", {}).get("action") for line in lines]
    assert "cdc-slot-created" in actions and "cdc-stopped" in actions
    assert b"hunter22" not in out + err


@pytest.mark.benchmark
def test_update_to_event_latency(
    db: Db, bootstrap: str, readers: list[TopicReader], capsys: pytest.CaptureFixture[str]
) -> None:
    """UPDATE (committed, synchronous_commit on) -> the event read from the topic (by a
    reader polling in a thread of its own), 50 updates 50 ms apart. Prints p50/p99 (p99 of
    50 samples: the largest); asserts only a generous bound."""
    topic = new_topic(bootstrap, "latency")
    reader = TopicReader(bootstrap, topic)
    readers.append(reader)
    cdc = Running(options(db, bootstrap, topic))
    try:
        wait_until(db.slot_lsn)
        db.sql("UPDATE @.products SET price = 0 WHERE id = 60")  # warm-up (producer id)
        reader.read(1)
        committed = []
        polling = threading.Thread(target=reader.read, args=(51, 60.0))
        polling.start()
        for i in range(1, 51):
            db.sql("UPDATE @.products SET price = price + 1 WHERE id = %s", i)
            committed.append(time.perf_counter())
            time.sleep(0.05)
        polling.join(70)
    finally:
        assert cdc.finish() == 0
    assert [e["tags"] for e in reader.got[1:]] == [[f"products:{i}"] for i in range(1, 51)]
    delays = sorted((a - c) * 1000 for a, c in zip(reader.arrived[1:], committed, strict=True))
    p50, p99 = statistics.median(delays), delays[-1]
    with capsys.disabled():
        print(f"\nUPDATE -> event on the topic: p50 {p50:.1f} ms, p99 {p99:.1f} ms (50 updates)")
    assert p50 < 2000


def _err_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("strata cdc: "), err
    return err


def test_a_table_without_replica_identity_is_refused_unless_inserts_only(
    db: Db, bootstrap: str, readers: list[TopicReader], capsys: pytest.CaptureFixture[str]
) -> None:
    db.sql("CREATE TABLE @.logs (a int, msg text)")  # no primary key, REPLICA IDENTITY DEFAULT
    db.sql("INSERT INTO @.logs VALUES (1, 'x')")
    topic = new_topic(bootstrap, "noident")
    rules = (parse_map(f"{db.name}.logs=log:{{a}}"),)
    opts = options(db, bootstrap, topic, rules=rules)
    assert once(opts) == 2
    err = _err_line(capsys)
    assert f"table {db.name}.logs has no replica identity" in err and "--inserts-only" in err
    assert db.sql("SELECT 1 FROM pg_publication WHERE pubname = %s", db.slot) == []
    assert db.slot_lsn() is None
    db.sql("UPDATE @.logs SET msg = 'y' WHERE a = 1")  # the application is not broken

    assert once(options(db, bootstrap, topic, rules=rules, inserts_only=(rules[0].name,))) == 0
    db.sql("INSERT INTO @.logs VALUES (2, 'z')")
    db.sql("UPDATE @.logs SET msg = 'w' WHERE a = 2")  # still allowed: only inserts published
    db.sql("DELETE FROM @.logs WHERE a = 1")
    db.sql("TRUNCATE @.logs")
    reader = TopicReader(bootstrap, topic)
    readers.append(reader)
    assert once(options(db, bootstrap, topic, rules=rules, inserts_only=(rules[0].name,))) == 0
    assert [e["tags"] for e in reader.read(2)] == [["log:2"], [f"{db.name}.logs"]]
    reader.quiet(0.3)

    db.sql("ALTER TABLE @.products REPLICA IDENTITY NOTHING")  # a key, but no identity
    assert once(options(db, bootstrap, topic)) == 2
    assert "REPLICA IDENTITY NOTHING" in _err_line(capsys)


def test_a_template_column_the_table_lacks_is_refused_at_start(
    db: Db, bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = (parse_map(f"{db.name}.products=p:{{nosuchcol}}"),)
    assert once(options(db, bootstrap, "unused", rules=rules)) == 2
    err = _err_line(capsys)
    assert f"table {db.name}.products has no column 'nosuchcol'" in err
    assert db.slot_lsn() is None


def test_publications_and_slots_not_made_by_the_tool_are_left_alone(
    db: Db, bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = new_topic(bootstrap, "owner")
    db.sql(f"CREATE PUBLICATION {db.slot} FOR TABLE @.products")  # the application's own
    assert once(options(db, bootstrap, topic)) == 2
    assert "was not created by strata cdc" in _err_line(capsys)
    drop = CdcOptions(dsn=db.dsn, slot=db.slot, drop_slot=True)
    assert run(drop, threading.Event()) == 2
    assert "--publication" in _err_line(capsys)
    assert db.sql("SELECT 1 FROM pg_publication WHERE pubname = %s", db.slot) == [(1,)]
    db.sql(f"DROP PUBLICATION {db.slot}")

    db.sql("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", db.slot)  # foreign
    assert once(options(db, bootstrap, topic)) == 2
    assert f"slot {db.slot} is not one strata cdc created" in _err_line(capsys)
    assert run(drop, threading.Event()) == 2
    assert "not dropped" in _err_line(capsys)
    assert db.slot_lsn() is not None
    assert db.sql("SELECT 1 FROM pg_publication WHERE pubname = %s", db.slot) == []
    db.sql("SELECT pg_drop_replication_slot(%s)", db.slot)

    assert once(options(db, bootstrap, topic)) == 0  # its own: made, marked, then dropped
    [(comment,)] = db.sql(
        "SELECT obj_description(oid, 'pg_publication') FROM pg_publication WHERE pubname = %s",
        db.slot,
    )
    assert comment == f"strata cdc {db.slot}"
    assert once(options(db, bootstrap, topic)) == 0  # and used again
    assert run(drop, threading.Event()) == 0
    assert db.slot_lsn() is None
    assert db.sql("SELECT 1 FROM pg_publication WHERE pubname = %s", db.slot) == []


def test_once_with_the_broker_unreachable_exits_1_with_one_line(db: Db) -> None:
    from tools.services.procs import free_port  # noqa: PLC0415

    nowhere = f"127.0.0.1:{free_port()}"
    opts = options(db, nowhere, "strata.test.never")
    assert once(CdcOptions(**{**_fields(opts), "kafka_bootstrap": service(
        "STRATA_TEST_KAFKA_BOOTSTRAP")})) == 0  # slot made, nothing to send  # fmt: skip
    held = db.slot_lsn()
    db.sql("UPDATE @.products SET price = 3 WHERE id = 3")
    argv = [sys.executable, "-c", "import sys; from sidecar.cdc.cli import main; "
            "sys.exit(main(sys.argv[1:]))", "--dsn", db.dsn, "--slot", db.slot,
            "--map", f"{db.name}.products=products:{{id}}", "--kafka-bootstrap", nowhere,
            "--topic", "strata.test.never", "--once", "--once-timeout-ms", "500",
            "--retry-ms", "100"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=80, check=False)
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr.decode()
    assert err.count("\n") == 1 and err.startswith("strata cdc: broker: "), err
    assert "Traceback" not in err
    assert time.monotonic() - started < 60
    assert db.slot_lsn() == held  # the change is read again next time

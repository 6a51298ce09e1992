"""`strata cdc`: publish invalidation events for row changes of PostgreSQL tables.

Two sources, one per process:

* the **slot** (default): a logical replication slot (``--slot``, pgoutput) and a
  publication (``--publication``, default the slot's name) on the database ``--dsn``, both
  created when missing and marked as the tool's; ``--drop-slot`` drops both and exits
  (only what the tool created: `sidecar.cdc.slot`). The mapped tables are checked at start
  (`sidecar.cdc.catalog`): missing tables or columns, and tables without a replica identity
  for UPDATE/DELETE unless listed in ``--inserts-only``, are refused;
* **Debezium** (``--debezium-topic T[,T]``): Debezium PostgreSQL change events on Kafka.

Both map table + key to tags (``--tables``, ``--map``, ``--map-file``:
`sidecar.cdc.mapping`) and publish v1 events to ``--topic`` on ``--kafka-bootstrap``; a
position (slot, consumer offsets) moves only after the broker acknowledged the events.
Every option may also come from ``STRATA_CDC_<OPTION>`` (flags win). Logs are ECS JSON on
stdout (``--log-format text`` for people); the DSN's password is never printed. SIGTERM or
SIGINT stops after the batch in flight.

Exit codes: 0 stopped (signal, ``--once`` done, ``--drop-slot`` done); 1 failed (one line on
stderr: database unreachable at start, a change that cannot be decoded, with ``--once`` the
broker unreachable for ``--once-timeout-ms``); 2 bad configuration (one line naming the
option: also a table, column, slot or publication the database refuses or that is not the
tool's). Without ``--once`` an unreachable broker is waited for (back-off), never fatal.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn

import psycopg
from confluent_kafka import KafkaException

from sidecar.cdc.catalog import SetupError
from sidecar.cdc.debezium_consumer import DebeziumConfig, DebeziumRunner
from sidecar.cdc.mapping import MappingError, TableMap, TableRule, load_map_file, parse_map
from sidecar.cdc.pgoutput import PgOutputError
from sidecar.cdc.publish import BrokerUnavailableError, Publisher, PublisherConfig
from sidecar.cdc.runner import SlotRunner, SlotRunnerConfig
from sidecar.cdc.slot import SlotError, SlotReader
from sidecar.cdc.translate import CdcStats, Translator
from sidecar.core.redact import RedactingFormatter, Scrubber

__all__ = ["CdcOptions", "UsageError", "build_parser", "main", "options_from", "run"]

log = logging.getLogger("strata.cdc")

_SLOT = re.compile(r"[a-z0-9_]{1,63}")
_PUBLICATION = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_BOOTSTRAP = re.compile(r"[^\s,]+:\d{1,5}(,[^\s,]+:\d{1,5})*")


class UsageError(ValueError):
    """A bad option: `option` is its flag."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option


@dataclasses.dataclass(frozen=True, slots=True)
class CdcOptions:
    dsn: str = ""
    slot: str = "strata_cdc"
    publication: str = ""
    rules: tuple[TableRule, ...] = ()
    inserts_only: tuple[str, ...] = ()
    kafka_bootstrap: str = ""
    topic: str = "strata.invalidations"
    topic_partitions: int = 1
    poll_ms: int = 50
    batch_changes: int = 1000
    retry_ms: int = 1000
    drop_slot: bool = False
    debezium_topics: tuple[str, ...] = ()
    debezium_group: str = "strata-cdc"
    dead_letter_topic: str = ""
    once: bool = False
    once_timeout_ms: int = 30_000
    log_level: str = "INFO"
    log_format: str = "ecs"

    def __post_init__(self) -> None:
        if not self.publication:  # default: the slot's name
            object.__setattr__(self, "publication", self.slot)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError("usage", message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="strata cdc",
        description="Publish Strata invalidation events for row changes of PostgreSQL tables "
        "(logical replication slot, or Debezium change events on Kafka).",
        epilog="Every option may also be set as STRATA_CDC_<OPTION> (e.g. STRATA_CDC_DSN).",
    )
    add = p.add_argument
    add("--dsn", help="libpq DSN or URL of the application database")
    add("--slot", help="replication slot name (default strata_cdc)")
    add("--publication", help="publication name (default: the slot name)")
    add("--tables", help="comma-separated tables tagged <table>:<key> (schema.table allowed)")
    add(
        "--map",
        action="append",
        metavar="TABLE=TEMPLATE[,TEMPLATE]",
        help="tag templates of a table, e.g. 'products=product:{id},sku:{sku}'; repeatable",
    )
    add("--map-file", help="TOML file of [tables.<name>] with tags, key, truncate_tags")
    add(
        "--inserts-only",
        metavar="TABLE[,TABLE]",
        help="mapped tables without a replica identity to publish for INSERT and TRUNCATE "
        "only (their UPDATE/DELETE purge nothing); default: none (such a table is refused)",
    )
    add("--kafka-bootstrap", help="host:port[,host:port] of the Kafka brokers")
    add("--topic", help="invalidation topic (default strata.invalidations)")
    add("--topic-partitions", help="partitions of the topic when this creates it (default 1)")
    add("--poll-ms", help="wait between slot reads when idle, ms (default 50)")
    add("--batch-changes", help="rows read per slot read, about (default 1000)")
    add(
        "--retry-ms",
        help="wait before retrying the broker or the database, ms (default 1000; the broker's "
        "doubles after each failure, up to 10 s)",
    )
    add("--drop-slot", action="store_true", help="drop the slot and the publication, then exit")
    add("--debezium-topic", help="consume Debezium change events from these topics instead")
    add("--debezium-group", help="consumer group of the Debezium topics (default strata-cdc)")
    add("--dead-letter-topic", help="copy skipped Debezium messages there (default: none)")
    add("--once", action="store_true", help="process what is there, then exit")
    add(
        "--once-timeout-ms",
        help="with --once: exit 1 when the broker has not taken the events (or assigned the "
        "Debezium partitions) within this time, ms (default 30000)",
    )
    add("--log-level", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    add("--log-format", help="ecs (JSON lines, default) or text")
    return p


def _int(option: str, raw: str | None, default: int, low: int, high: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(option, f"{raw!r} is not an integer") from None
    if not low <= value <= high:
        raise UsageError(option, f"{value} is outside {low}..{high}")
    return value


def _match(option: str, raw: str, pattern: re.Pattern[str], rule: str) -> str:
    if not pattern.fullmatch(raw):
        raise UsageError(option, f"{raw[:80]!r} is not {rule}")
    return raw


def _rules(tables: str | None, maps: Sequence[str], map_file: str | None) -> tuple[TableRule, ...]:
    rules: list[TableRule] = []

    def add(option: str, make: Callable[[], list[TableRule]]) -> None:
        try:
            rules.extend(make())
            if rules:
                TableMap(rules)  # a table mapped twice, across the options
        except MappingError as exc:
            raise UsageError(option, str(exc)) from None

    add("--tables", lambda: [TableRule(t.strip()) for t in (tables or "").split(",") if t.strip()])
    add("--map", lambda: [parse_map(spec) for spec in maps])
    add("--map-file", lambda: load_map_file(Path(map_file)) if map_file else [])
    return tuple(rules)


def options_from(argv: Sequence[str], env: Mapping[str, str]) -> CdcOptions:
    """The checked options of `argv` and `env` (`UsageError` names the bad one)."""
    args = build_parser().parse_args(list(argv))

    def get(name: str) -> str | None:
        value = getattr(args, name)
        return value if value is not None else env.get("STRATA_CDC_" + name.upper())

    debezium = tuple(t.strip() for t in (get("debezium_topic") or "").split(",") if t.strip())
    maps = args.map if args.map is not None else [m for m in [env.get("STRATA_CDC_MAP")] if m]
    once = args.once or env.get("STRATA_CDC_ONCE", "").lower() in ("1", "true", "yes")
    drop = args.drop_slot or env.get("STRATA_CDC_DROP_SLOT", "").lower() in ("1", "true", "yes")
    slot = _match("--slot", get("slot") or "strata_cdc", _SLOT, "1-63 of [a-z0-9_]")
    publication = _match(
        "--publication", get("publication") or slot, _PUBLICATION, "an identifier of [A-Za-z0-9_]"
    )
    topic = _match("--topic", get("topic") or "strata.invalidations", _TOPIC, "a Kafka topic")
    for t in debezium:
        _match("--debezium-topic", t, _TOPIC, "a Kafka topic")
    dead = get("dead_letter_topic") or ""
    if dead:
        _match("--dead-letter-topic", dead, _TOPIC, "a Kafka topic")
    dsn = get("dsn") or ""
    bootstrap = get("kafka_bootstrap") or ""
    if drop and debezium:
        raise UsageError("--drop-slot", "not with --debezium-topic (no slot is used)")
    if not debezium and not dsn:
        raise UsageError("--dsn", "required (or STRATA_CDC_DSN) unless --debezium-topic")
    if not drop:
        if not bootstrap:
            raise UsageError("--kafka-bootstrap", "required (or STRATA_CDC_KAFKA_BOOTSTRAP)")
        _match("--kafka-bootstrap", bootstrap, _BOOTSTRAP, "host:port[,host:port...]")
    rules = () if drop else _rules(get("tables"), maps, get("map_file"))
    if not drop and not rules:
        raise UsageError("--tables", "no table to watch (give --tables, --map or --map-file)")
    inserts_only = tuple(t.strip() for t in (get("inserts_only") or "").split(",") if t.strip())
    mapped = {r.name for r in rules}
    for name in inserts_only:
        if not drop and name not in mapped:
            raise UsageError("--inserts-only", f"{name[:80]!r} is not a mapped table")
    level = (get("log_level") or "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise UsageError("--log-level", f"{level!r} is not DEBUG, INFO, WARNING or ERROR")
    fmt = get("log_format") or "ecs"
    if fmt not in ("ecs", "text"):
        raise UsageError("--log-format", f"{fmt!r} is not ecs or text")
    return CdcOptions(
        dsn=dsn,
        slot=slot,
        publication=publication,
        rules=rules,
        inserts_only=inserts_only,
        kafka_bootstrap=bootstrap,
        topic=topic,
        topic_partitions=_int("--topic-partitions", get("topic_partitions"), 1, 1, 10_000),
        poll_ms=_int("--poll-ms", get("poll_ms"), 50, 1, 60_000),
        batch_changes=_int("--batch-changes", get("batch_changes"), 1000, 1, 1_000_000),
        retry_ms=_int("--retry-ms", get("retry_ms"), 1000, 10, 600_000),
        drop_slot=drop,
        debezium_topics=debezium,
        debezium_group=get("debezium_group") or "strata-cdc",
        dead_letter_topic=dead,
        once=once,
        once_timeout_ms=_int("--once-timeout-ms", get("once_timeout_ms"), 30_000, 100, 3_600_000),
        log_level=level,
        log_format=fmt,
    )


def _fail(code: int, text: str, scrubber: Scrubber) -> int:
    print(f"strata cdc: {scrubber.scrub(text)}", file=sys.stderr)
    return code


def run(opts: CdcOptions, stop: threading.Event) -> int:
    """Run until `stop` is set (or ``once`` is done); the exit code. Logs through the
    ``strata.cdc`` loggers; errors also as one line on stderr."""
    scrubber = Scrubber.of_settings([opts.dsn])
    stats = CdcStats()
    reader = SlotReader(opts.dsn, opts.slot, opts.publication)
    try:
        if opts.drop_slot:
            slot, publication = reader.drop()
            log.info(
                f"dropped: slot {opts.slot} {'yes' if slot else 'absent'}, publication "
                f"{opts.publication} {'yes' if publication else 'absent'}",
                extra={"event.action": "cdc-slot-dropped"},
            )
            return 0
        _serve(opts, stop, reader, stats)
    except SetupError as exc:
        return _fail(2, str(exc), scrubber)
    except BrokerUnavailableError as exc:
        return _fail(1, f"broker: {exc}", scrubber)
    except KafkaException as exc:
        return _fail(1, f"broker {opts.kafka_bootstrap}: {exc}", scrubber)
    except (SlotError, PgOutputError) as exc:
        return _fail(1, f"slot {opts.slot}: {exc}", scrubber)
    except psycopg.Error as exc:
        return _fail(1, f"database: {str(exc).strip().splitlines()[0]}", scrubber)
    finally:
        reader.close()
    return 0


def _serve(opts: CdcOptions, stop: threading.Event, reader: SlotReader, stats: CdcStats) -> None:
    retry_s = opts.retry_ms / 1000
    give_up_s = opts.once_timeout_ms / 1000 if opts.once else None
    rules = opts.rules
    if not opts.debezium_topics:
        rules = tuple(reader.ensure(opts.rules, opts.inserts_only))
    translator = Translator(TableMap(rules), opts.topic, stats)
    publisher = Publisher(
        PublisherConfig(
            opts.kafka_bootstrap,
            opts.topic,
            opts.topic_partitions,
            retry_interval_s=retry_s,
            give_up_s=give_up_s,
        )
    )
    try:
        if opts.debezium_topics:
            config = DebeziumConfig(
                opts.kafka_bootstrap,
                opts.debezium_topics,
                group_id=opts.debezium_group,
                dead_letter_topic=opts.dead_letter_topic,
                assign_timeout_s=opts.once_timeout_ms / 1000,
            )
            DebeziumRunner(config, translator, publisher, stop).run(once=opts.once)
        else:
            runner_config = SlotRunnerConfig(opts.poll_ms / 1000, opts.batch_changes, retry_s)
            SlotRunner(reader, translator, publisher, runner_config, stop).run(once=opts.once)
    finally:
        publisher.close()
        log.info(
            f"stopped: {stats}",
            extra={"event.action": "cdc-stopped", **{f"strata.{k}": v for k, v in
                                                      dataclasses.asdict(stats).items()}},
        )  # fmt: skip


def _install_signals(stop: threading.Event) -> None:
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, _frame: object) -> None:
        log.info(f"signal {signum}: stopping", extra={"event.action": "cdc-signal"})
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        opts = options_from(sys.argv[1:] if argv is None else argv, os.environ)
    except UsageError as exc:
        print(f"strata cdc: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    from sidecar.observability.logs import configure_logging  # noqa: PLC0415

    configure_logging(opts.log_level, opts.log_format)
    scrubber = Scrubber.of_settings([opts.dsn])
    for handler in logging.getLogger().handlers:
        if handler.formatter is not None:
            handler.setFormatter(RedactingFormatter(handler.formatter, scrubber))
    stop = threading.Event()
    _install_signals(stop)
    return run(opts, stop)

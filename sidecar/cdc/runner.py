"""The slot loop: peek, decode, map, deliver, then advance.

Each `SlotRunner.step` peeks at most about ``batch_changes`` rows (whole transactions),
turns each transaction into events (one batch per transaction, split when too large), has
the `Publisher` deliver all of them, and only then advances the slot: to the end of the
last transaction read, or, when the peek returned fewer rows than asked, to the WAL
position it read up to (nothing of the mapped tables committed before it is left).

`run` repeats steps every ``poll_s`` (at once while a step read a full batch: a backlog),
until `stop` is set; with ``once`` it returns after the first step that found no backlog.
A set `stop` lets the step in flight finish its delivery attempt; what was not delivered
is not advanced over and is read again by the next run.

Database errors (server restarted, connection lost) are logged and retried every
``retry_s`` with a new connection; nothing is skipped. A message the decoder cannot read
(`PgOutputError`) is raised: it would be the same on every retry.
"""

from __future__ import annotations

import dataclasses
import logging
import threading

import psycopg

from sidecar.cdc.changes import Transaction, Transactions
from sidecar.cdc.outgoing import format_lsn, slot_event_base
from sidecar.cdc.pgoutput import decode
from sidecar.cdc.publish import Outgoing, Publisher
from sidecar.cdc.slot import SlotReader
from sidecar.cdc.translate import Translator

__all__ = ["SlotRunner", "SlotRunnerConfig"]

log = logging.getLogger("strata.cdc")


@dataclasses.dataclass(frozen=True, slots=True)
class SlotRunnerConfig:
    poll_s: float = 0.05
    batch_changes: int = 1000
    retry_s: float = 1.0


class SlotRunner:
    """Reads `reader`'s slot into `publisher` through `translator`, one thread."""

    def __init__(
        self,
        reader: SlotReader,
        translator: Translator,
        publisher: Publisher,
        config: SlotRunnerConfig,
        stop: threading.Event,
    ) -> None:
        self._reader = reader
        self._translator = translator
        self._publisher = publisher
        self._config = config
        self._stop = stop
        self._transactions = Transactions()
        self._origin = f"cdc:{reader.slot}"
        self._key = reader.slot.encode()

    def _messages(self, txn: Transaction) -> list[Outgoing]:
        return self._translator.messages(
            txn.changes,
            origin=self._origin,
            ts=txn.commit_time_ms,
            base=slot_event_base(self._reader.slot, txn.end_lsn),
            key=self._key,
            where=f"slot {self._reader.slot} xid {txn.xid} lsn {format_lsn(txn.end_lsn)}",
        )

    def step(self) -> bool:
        """One peek, delivered and advanced; whether a backlog may be left (read again at
        once). False also when `stop` ended an undelivered batch (nothing advanced)."""
        peek = self._reader.peek(self._config.batch_changes)
        self._transactions.reset()
        out: list[Outgoing] = []
        last_end = 0
        for _lsn, data in peek.rows:
            txn = self._transactions.feed(decode(data))
            if txn is not None:
                self._translator.stats.transactions += 1
                out.extend(self._messages(txn))
                last_end = txn.end_lsn
        if out and not self._publisher.deliver(out, self._stop):
            log.warning(
                f"stopping with {len(out)} events undelivered: they are read again at the "
                f"next start (slot {self._reader.slot} stays at "
                f"{format_lsn(self._reader.confirmed)})",
                extra={"event.action": "cdc-stop-undelivered"},
            )
            return False
        backlog = len(peek.rows) >= self._config.batch_changes
        self._reader.advance(last_end if backlog else max(last_end, peek.upto))
        return backlog

    def run(self, *, once: bool = False) -> None:
        while not self._stop.is_set():
            try:
                backlog = self.step()
            except psycopg.Error as exc:
                if once:
                    raise
                self._translator.warn(
                    "cdc-database-error",
                    f"reading slot {self._reader.slot} failed ({exc}); retrying in "
                    f"{self._config.retry_s} s",
                )
                self._reader.close()
                self._stop.wait(self._config.retry_s)
                continue
            if once and not backlog:
                return
            if not backlog:
                self._stop.wait(self._config.poll_s)

"""Per-request analytics events: sampled on the request path, sent to the sidecar in
batches by a thread of their own.

`install()` (idempotent; called from each plugin-server worker's start-up and from the
kong-pdk engine) subscribes the process's `Recorder` to `kong_plugin.outcome`. For every
published `Outcome` whose route has ``analytics.sample_rate`` > 0, the recorder draws one
random number; a sampled outcome is appended to a bounded buffer -- O(1), under a lock held
for an append, no PDK call, no I/O, nothing built. A daemon thread per process (started on
the first sampled outcome, again after a fork) takes the buffer every `FLUSH_INTERVAL_S`,
or as soon as `BATCH_EVENTS` are waiting, builds the events (`kong_plugin.access_event`:
the key is hashed there, off the request path) and sends them, grouped by the route's
sidecar (address, uid), in batches of at most `BATCH_EVENTS`, over the unary
``ReportAccess`` call (`SidecarClient.report_access`).

Loss, always counted in `stats().dropped` by reason (a closed set, `DROP_REASONS`):

* ``buffer-full``: `MAX_BUFFERED` events already wait (the sidecar is slow, or the thread
  is behind); the new one is dropped, the request is not slowed.
* ``sidecar-unavailable``: the sidecar did not answer in `REPORT_TIMEOUT_S`, or could not be
  reached (or is not trusted, `kong_plugin.peer`): the batch is dropped and that sidecar is
  left alone for a back-off (1 s, doubling to 30 s while it keeps failing); events for it
  meanwhile are dropped under the same reason.
* ``disabled``: the sidecar says analytics is off there (no Kafka, no analytics topic) or
  does not know the call (an older sidecar): nothing is sent to it for the time it asks
  (`AccessAck.retry_after_ms`, 1 s to 10 min; 60 s for an older sidecar).
* ``rejected``: the sidecar refused the batch, or events in it (invalid; its metrics say
  which field).
* ``sidecar-queue-full``: the sidecar took the batch but its own queue had no room.

Invariant (at any `stats()`): ``sampled == sent + sum(dropped) + buffered``, where
``buffered`` counts events waiting and events in a batch being sent.

Not guaranteed: delivery (events are a sample: at most once, never retried); events
buffered when the process exits are lost; order between batches; sampling per route is
independent per process (each worker draws its own numbers); thread safety of anything but
`Recorder.offer` and `Recorder.stats`. The thread costs the worker's event loop some GIL
time (building and sending a batch: a few microseconds per event).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from strata.v1 import cache_pb2 as pb

from kong_plugin import outcome as outcomes
from kong_plugin.access_event import access_event
from kong_plugin.client import SidecarError, SidecarRejectedError
from kong_plugin.config import SidecarConfig

__all__ = [
    "BATCH_EVENTS",
    "DROP_REASONS",
    "FLUSH_INTERVAL_S",
    "MAX_BUFFERED",
    "REPORT_TIMEOUT_S",
    "AnalyticsStats",
    "Recorder",
    "Sender",
    "Target",
    "install",
    "recorder",
    "stats",
]

log = logging.getLogger("strata.plugin")

#: Events waiting to be sent, per process; beyond it new ones are dropped (buffer-full).
MAX_BUFFERED = 10_000
#: Most events in one ``ReportAccess`` batch (the sidecar refuses more than 1,024).
BATCH_EVENTS = 500
#: Longest time an event waits in the buffer before the thread sends it.
FLUSH_INTERVAL_S = 0.25
#: Deadline of one ``ReportAccess`` call.
REPORT_TIMEOUT_S = 1.0
#: Back-off after a failed call to one sidecar: first, and longest.
BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 30.0
#: Pause after a sidecar said analytics is off, when it names none (or an older sidecar).
DISABLED_PAUSE_S = 60.0
DISABLED_PAUSE_MAX_S = 600.0
#: Least time between two log lines of one kind.
LOG_INTERVAL_S = 60.0
#: grpc status code of a call the server does not implement.
_UNIMPLEMENTED = 12

DROP_REASONS = (
    "buffer-full",
    "sidecar-unavailable",
    "disabled",
    "rejected",
    "sidecar-queue-full",
)


@dataclass(frozen=True, slots=True)
class AnalyticsStats:
    """Counters of this process since it started (`buffered`: right now, waiting or being
    sent). `dropped` has every reason of `DROP_REASONS`, 0 when none was dropped."""

    sampled: int
    sent: int
    dropped: Mapping[str, int]
    buffered: int


@dataclass(frozen=True, slots=True)
class Target:
    """A sidecar to send to: the route's ``sidecar.address``, ``timeout_ms`` (names the
    process's client of that sidecar, `kong_plugin.runtime.client_for`) and ``uid``."""

    address: str
    timeout_s: float
    uid: int | None


class Sender(Protocol):
    """Sends one batch to one sidecar; raises `SidecarError` when it cannot."""

    def __call__(self, target: Target, batch: pb.AccessBatch, timeout_s: float) -> pb.AccessAck: ...


def send_to_sidecar(target: Target, batch: pb.AccessBatch, timeout_s: float) -> pb.AccessAck:
    """The real `Sender`: the process's client of `target` (shared with the request path)."""
    from kong_plugin import runtime  # noqa: PLC0415 - the runtime loads the whole plugin

    client = runtime.client_for(target.address, target.timeout_s, target.uid)
    return client.report_access(batch, timeout_s)


@dataclass(slots=True)
class _Health:
    """When a sidecar may be sent to again, and why not before."""

    until: float = 0.0
    reason: str = ""
    backoff_s: float = 0.0


class Recorder:
    """Samples outcomes into a bounded buffer and sends them from a thread of its own."""

    def __init__(
        self,
        sender: Sender = send_to_sidecar,
        *,
        max_buffered: int = MAX_BUFFERED,
        batch_events: int = BATCH_EVENTS,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_buffered < 1 or batch_events < 1 or flush_interval_s <= 0:
            raise ValueError("the buffer, a batch and the interval must be positive")
        self._send = sender
        self._max = max_buffered
        self._batch = batch_events
        self._interval = flush_interval_s
        self._random = (rng or random.Random()).random
        self._clock = clock
        self._reset()

    def _reset(self) -> None:
        """Fresh state (at start and in a forked child: the parent's thread is not ours)."""
        self._lock = threading.Lock()
        self._buffer: deque[tuple[SidecarConfig, outcomes.Outcome, str]] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sampled = 0
        self._sent = 0
        self._in_flight = 0
        self._dropped: Counter[str] = Counter()
        self._health: dict[Target, _Health] = {}
        self._logged: dict[str, float] = {}

    # -- the request path -----------------------------------------------------------

    def offer(self, outcome: outcomes.Outcome) -> None:
        """The `kong_plugin.outcome` subscriber: sample `outcome` per its route's config
        and buffer it (see the module docstring). Never raises, never blocks on I/O."""
        config = outcome.config
        if config is None:
            return
        settings = config.analytics
        rate = settings.sample_rate
        if rate <= 0.0 or (rate < 1.0 and self._random() >= rate):
            return
        with self._lock:
            self._sampled += 1
            if len(self._buffer) >= self._max:
                self._dropped["buffer-full"] += 1
                return
            self._buffer.append((config.sidecar, outcome, settings.service_id))
            full = len(self._buffer) == self._batch
        if self._thread is None:
            self._start()
        if full:
            self._wake.set()

    def stats(self) -> AnalyticsStats:
        with self._lock:
            return AnalyticsStats(
                sampled=self._sampled,
                sent=self._sent,
                dropped=MappingProxyType({r: self._dropped[r] for r in DROP_REASONS}),
                buffered=len(self._buffer) + self._in_flight,
            )

    # -- the thread -----------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._run, name="strata-analytics", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 1.0) -> None:
        """Stop the thread for good (offers still buffer; what is buffered is sent only by
        calling `flush`); for tests and orderly exits."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        with self._lock:
            self._thread = None

    def after_fork(self) -> None:
        """In a forked child: forget the parent's buffer, counters and thread."""
        self._reset()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.flush()
            except Exception:  # a bug here must not end the thread: log it, keep going
                self._warn("flush", "analytics flush failed", exc_info=True)

    def flush(self) -> None:
        """Send everything buffered now (the thread's work; tests call it directly)."""
        with self._lock:
            taken, self._buffer = self._buffer, deque()
            self._in_flight += len(taken)
        try:
            by_sidecar: dict[SidecarConfig, list[tuple[outcomes.Outcome, str]]] = {}
            for side, outcome, service in taken:
                by_sidecar.setdefault(side, []).append((outcome, service))
            for side, items in by_sidecar.items():
                target = Target(side.address, side.timeout_s, side.uid)
                for start in range(0, len(items), self._batch):
                    self._send_batch(target, items[start : start + self._batch])
        finally:
            with self._lock:
                self._in_flight = 0

    def _send_batch(self, target: Target, items: list[tuple[outcomes.Outcome, str]]) -> None:
        now = self._clock()
        health = self._health.setdefault(target, _Health())
        if now < health.until:
            self._settle(len(items), dropped={health.reason: len(items)})
            return
        batch = pb.AccessBatch(events=[access_event(o, service) for o, service in items])
        try:
            ack = self._send(target, batch, REPORT_TIMEOUT_S)
        except SidecarRejectedError as exc:
            if exc.code == _UNIMPLEMENTED:
                self._pause(target, health, "disabled", DISABLED_PAUSE_S)
                self._settle(len(items), dropped={"disabled": len(items)})
            else:
                self._fail(target, health, "rejected", str(exc))
                self._settle(len(items), dropped={"rejected": len(items)})
            return
        except SidecarError as exc:
            self._fail(target, health, "sidecar-unavailable", str(exc))
            self._settle(len(items), dropped={"sidecar-unavailable": len(items)})
            return
        health.backoff_s = 0.0
        if ack.disabled:
            pause = ack.retry_after_ms / 1000.0 if ack.retry_after_ms else DISABLED_PAUSE_S
            self._pause(target, health, "disabled", pause)
            self._settle(len(items), dropped={"disabled": len(items)})
            return
        self._settle(len(items), ack)

    def _settle(
        self, count: int, ack: pb.AccessAck | None = None, dropped: Mapping[str, int] | None = None
    ) -> None:
        """Account for `count` events of a batch: sent and dropped per `ack` (accepted,
        rejected, dropped; whatever it does not account for counts as rejected), or all
        dropped per `dropped`."""
        losses: dict[str, int] = dict(dropped or {})
        sent = 0
        if ack is not None:
            sent = min(ack.accepted, count)
            queue_full = min(ack.dropped, count - sent)
            losses = {"sidecar-queue-full": queue_full, "rejected": count - sent - queue_full}
        with self._lock:
            self._sent += sent
            self._in_flight -= count
            for reason, n in losses.items():
                if n:
                    self._dropped[reason] += n

    def _fail(self, target: Target, health: _Health, reason: str, why: str) -> None:
        health.backoff_s = min(BACKOFF_MAX_S, max(BACKOFF_MIN_S, health.backoff_s * 2))
        health.until = self._clock() + health.backoff_s
        health.reason = reason
        self._warn(
            reason,
            "analytics events for sidecar %s dropped (%s); retrying in %.0f s",
            target.address,
            why,
            health.backoff_s,
        )

    def _pause(self, target: Target, health: _Health, reason: str, pause_s: float) -> None:
        health.until = self._clock() + min(DISABLED_PAUSE_MAX_S, max(1.0, pause_s))
        health.reason = reason
        self._warn(
            reason,
            "analytics is off on sidecar %s; events for it are dropped for %.0f s",
            target.address,
            pause_s,
        )

    def _warn(self, kind: str, message: str, *args: Any, exc_info: bool = False) -> None:
        now = self._clock()
        if now - self._logged.get(kind, -LOG_INTERVAL_S) >= LOG_INTERVAL_S:
            self._logged[kind] = now
            log.warning(message, *args, exc_info=exc_info)


_recorder = Recorder()
_install_lock = threading.Lock()
_unsubscribe: Callable[[], None] | None = None
with contextlib.suppress(AttributeError):  # os.register_at_fork: POSIX only
    os.register_at_fork(after_in_child=_recorder.after_fork)


def recorder() -> Recorder:
    """This process's recorder."""
    return _recorder


def install() -> None:
    """Subscribe this process's recorder to the outcomes (idempotent: once per process)."""
    global _unsubscribe  # noqa: PLW0603 - one subscription per process
    with _install_lock:
        if _unsubscribe is None or _recorder.offer not in outcomes.subscribers():
            _unsubscribe = outcomes.subscribe(_recorder.offer)


def stats() -> AnalyticsStats:
    """This process's analytics counters (`Recorder.stats`)."""
    return _recorder.stats()

"""The bounded pool background refreshes run on (`kong_plugin.refresh`), and their counts.

Each refresh runs on a daemon thread of its own, outside any client's request, and only
while fewer than the route's ``background_refresh.max_concurrent`` refreshes run in this
plugin-server process: a refresh beyond it is not started (`Started.FULL`; the caller
gives up the fill lease, and the stale copy stays). A refresh of a key already being
refreshed here is not started twice (`Started.DUPLICATE`: the one running ends the lease).

What became of each refresh is counted by `Outcome` (the labels a metric would carry),
and failures are logged with Python logging, at most once per `LOG_INTERVAL_S` per
outcome, with the number left unlogged since: never through Kong's PDK, which a thread
outside a request cannot call.

Not guaranteed: anything across plugin-server processes (each has its own bound); that a
started refresh finishes (the process may exit first); fairness between routes (the bound
is per process, each route's ``max_concurrent`` compared with all refreshes running).
"""

from __future__ import annotations

import enum
import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from kong_plugin.report import Reporter

log = logging.getLogger("strata.plugin")

#: Least seconds between two log lines about refreshes with the same outcome.
LOG_INTERVAL_S = 30.0


class Outcome(enum.Enum):
    """What a background refresh came to."""

    REFRESHED = "refreshed"  # a new response stored in place of the stale one
    REVALIDATED = "revalidated"  # a 304: the entry stored again with renewed freshness
    NOT_STORABLE = "not-storable"  # an answer that may not be stored: stale copy kept
    ERROR_STATUS = "error-status"  # a 5xx: stale copy kept
    CHANGED_STATUS = "changed-status"  # a non-2xx where a different status is stored: kept
    TIMEOUT = "timeout"  # no answer within background_refresh.timeout_ms
    CONNECTION = "connection"  # could not connect (or resolve, or TLS), or it broke
    PROTOCOL = "protocol"  # a malformed or oversized answer
    SIDECAR = "sidecar"  # the answer could not be stored (or the lease not released)
    SKIPPED = "skipped"  # not started: max_concurrent refreshes were running
    DUPLICATE = "duplicate"  # not started: the key is being refreshed here already
    FAILED = "failed"  # the refresh raised (a bug): counted and logged

    @property
    def failure(self) -> bool:
        """Worth a log line: the stale copy stays because something went wrong."""
        return self not in (Outcome.REFRESHED, Outcome.REVALIDATED, Outcome.DUPLICATE)


#: A refresh: runs it to the end, says how it went and (for the log) why.
Job = Callable[[], tuple[Outcome, str]]


class Started(enum.Enum):
    """What became of a submitted refresh."""

    STARTED = "started"
    FULL = "full"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class RefreshStats:
    """Refreshes running now, and outcomes since start."""

    running: int
    outcomes: Mapping[Outcome, int]


class RefreshPool:
    """Runs refreshes on threads of their own, bounded per call (thread-safe)."""

    def __init__(self, log_interval_s: float = LOG_INTERVAL_S) -> None:
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._keys: set[bytes] = set()
        self._outcomes: Counter[Outcome] = Counter()
        self._limiter = Reporter(log_interval_s)

    def submit(self, key: bytes, job: Job, limit: int) -> Started:
        """Start `job` (the refresh of `key`) unless `limit` refreshes run or `key` is
        being refreshed already; a refusal is counted as that job's outcome."""
        with self._lock:
            if key in self._keys:
                self._outcomes[Outcome.DUPLICATE] += 1
                return Started.DUPLICATE
            if len(self._keys) >= limit:
                self._outcomes[Outcome.SKIPPED] += 1
                refused = True
            else:
                self._keys.add(key)
                refused = False
        if refused:
            self.note(Outcome.SKIPPED, f"{limit} refreshes already running")
            return Started.FULL
        thread = threading.Thread(
            target=self._run, args=(key, job), name="strata-refresh", daemon=True
        )
        try:
            thread.start()
        except RuntimeError:  # no thread to be had: as if the pool were full
            self._done(key, Outcome.SKIPPED)
            return Started.FULL
        return Started.STARTED

    def _run(self, key: bytes, job: Job) -> None:
        outcome = Outcome.FAILED
        try:
            outcome, detail = job()
            self.note(outcome, detail)
        except Exception:
            log.exception("background refresh failed")
        finally:
            self._done(key, outcome)

    def _done(self, key: bytes, outcome: Outcome) -> None:
        with self._lock:
            self._keys.discard(key)
            self._outcomes[outcome] += 1
            if not self._keys:
                self._idle.notify_all()

    def note(self, outcome: Outcome, detail: str) -> None:
        """Log a failed refresh, at most once per interval per outcome (module docstring)."""
        if not outcome.failure:
            return
        suppressed = self._limiter.due(outcome.value)
        if suppressed is None:
            return
        more = f" ({suppressed} more since the last such line)" if suppressed else ""
        log.warning("background refresh %s: %s%s", outcome.value, detail, more)

    def stats(self) -> RefreshStats:
        with self._lock:
            return RefreshStats(len(self._keys), dict(self._outcomes))

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait until no refresh runs (for tests and shutdown); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._keys, timeout_s)

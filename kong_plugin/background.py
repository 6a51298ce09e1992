"""A bounded pool that runs small sidecar calls after the response has gone out.

Lease releases (and the drop of an entry a refresh found gone) do not change what the
client gets, so the handler hands them here instead of waiting for the sidecar. Stores do
not come here: they run before the response goes out, so that the next request finds them
(`kong_plugin.sidecar_jobs.store_now`).

A job is refused only past `MAX_JOBS` queued (a lost release makes other requests wait
for a fill that never comes, so the bound is generous); a refusal is counted
(``dropped``). Jobs must not raise; an exception is swallowed and counted (``failed``).

What this does not guarantee: that a queued job runs (the process may exit first).
"""

from __future__ import annotations

import collections
import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("strata.plugin")

WORKERS = 4
MAX_JOBS = 16384


class Submitted(enum.Enum):
    """What became of a submitted job."""

    QUEUED = "queued"
    FULL = "full"  # refused: `MAX_JOBS` are queued


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Counters since start and the queue's current depth (`done`: jobs that returned)."""

    queued: int
    dropped: int
    failed: int
    depth: int
    done: int = 0


class Background:
    """Worker threads draining one bounded FIFO of jobs."""

    def __init__(self, workers: int = WORKERS, max_jobs: int = MAX_JOBS) -> None:
        if workers < 1 or max_jobs < 1:
            raise ValueError("workers and max_jobs must be positive")
        self.max_jobs = max_jobs
        self._jobs: collections.deque[Callable[[], object]] = collections.deque()
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # guards the state; workers wait for jobs
        self._idle = threading.Condition(lock)  # join waits for an empty, idle queue
        self._running = 0
        self.queued = self.dropped = self.failed = self.done = 0
        self._workers = [
            threading.Thread(target=self._run, name=f"strata-bg-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in self._workers:
            t.start()

    def submit(self, job: Callable[[], object]) -> Submitted:
        """Queue `job` unless `max_jobs` are queued already."""
        with self._cond:
            if len(self._jobs) >= self.max_jobs:
                self.dropped += 1
                return Submitted.FULL
            self._jobs.append(job)
            self.queued += 1
            self._cond.notify()
        return Submitted.QUEUED

    def _take(self) -> Callable[[], object]:
        with self._cond:
            while not self._jobs:
                self._cond.wait()
            self._running += 1
            return self._jobs.popleft()

    def _run(self) -> None:
        while True:
            job = self._take()
            ok = False
            try:
                job()
                ok = True
            except Exception:
                with self._cond:
                    self.failed += 1
                log.debug("background sidecar call failed", exc_info=True)
            finally:
                with self._cond:
                    self.done += ok
                    self._running -= 1
                    if not self._jobs and not self._running:
                        self._idle.notify_all()

    def stats(self) -> QueueStats:
        with self._cond:
            return QueueStats(self.queued, self.dropped, self.failed, len(self._jobs), self.done)

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait until every queued job ran (for tests and shutdown); False on timeout."""
        with self._cond:
            return self._idle.wait_for(lambda: not self._jobs and not self._running, timeout_s)

"""A bounded pool that runs sidecar writes after the response has gone out.

Stores and lease releases do not change what the client gets, so the response phase hands
them here instead of waiting for the sidecar. What it holds is bounded twice: by the number
of queued stores and by the bytes of their bodies (a burst of 1 MiB responses must not grow
the plugin server by a gigabyte). Within those bounds a miss burst is absorbed, not dropped:

* a store of a key that is already queued replaces nothing and is not queued again (the
  queued one stores the same response: counted as ``deduplicated``, reported as stored);
* a lease release is never refused for lack of room (it is tiny and, if lost, makes other
  requests wait for a fill that never comes) -- only a hard cap of `RELEASE_CAP` queued
  releases bounds them.

A store refused because the queue is full is counted (``dropped``) and the caller is told, so
it can say so truthfully in ``Cache-Status``. Jobs must not raise; an exception is swallowed
and counted (``failed``).

What this does not guarantee: that a queued job runs (the process may exit first), or that a
store that ran was admitted by the sidecar.
"""

from __future__ import annotations

import collections
import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("strata.plugin")

#: Defaults: enough for a burst of a few thousand misses of ordinary responses on one node.
WORKERS = 8
MAX_JOBS = 4096
MAX_BYTES = 64 * 1024 * 1024
#: Releases queued beyond `MAX_JOBS` before even they are refused.
RELEASE_CAP = 4 * MAX_JOBS


class Submitted(enum.Enum):
    """What became of a submitted job."""

    QUEUED = "queued"
    DEDUPLICATED = "deduplicated"  # the same key's store is already queued
    FULL = "full"  # refused: the queue is at its job or byte bound

    @property
    def accepted(self) -> bool:
        return self is not Submitted.FULL


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Counters since start and the queue's current depth."""

    queued: int
    deduplicated: int
    dropped: int
    failed: int
    depth: int
    depth_bytes: int


@dataclass(slots=True)
class _Job:
    run: Callable[[], object]
    key: bytes | None
    size: int


class Background:
    """Worker threads draining one FIFO of jobs, bounded by count and by body bytes."""

    def __init__(
        self, workers: int = WORKERS, max_jobs: int = MAX_JOBS, max_bytes: int = MAX_BYTES
    ) -> None:
        if workers < 1 or max_jobs < 1 or max_bytes < 1:
            raise ValueError("workers, max_jobs and max_bytes must be positive")
        self.max_jobs = max_jobs
        self.max_bytes = max_bytes
        self._jobs: collections.deque[_Job] = collections.deque()
        self._keys: set[bytes] = set()  # keys of queued (not yet running) stores
        self._stores = 0
        self._releases = 0
        self._bytes = 0
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # guards the state; workers wait for jobs
        self._idle = threading.Condition(lock)  # join waits for an empty, idle queue
        self._running = 0
        self.queued = self.deduplicated = self.dropped = self.failed = 0
        self._workers = [
            threading.Thread(target=self._run, name=f"strata-bg-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in self._workers:
            t.start()

    def submit_store(self, key: bytes, size: int, job: Callable[[], object]) -> Submitted:
        """Queue the store of `key` (a body of `size` bytes) unless the same key's store is
        queued already or the queue is at a bound."""
        with self._cond:
            if key in self._keys:
                self.deduplicated += 1
                return Submitted.DEDUPLICATED
            if self._stores >= self.max_jobs or (
                self._stores and self._bytes + size > self.max_bytes
            ):
                self.dropped += 1
                return Submitted.FULL
            self._keys.add(key)
            self._stores += 1
            self._bytes += size
            self._push(_Job(job, key, size))
        return Submitted.QUEUED

    def submit(self, job: Callable[[], object]) -> Submitted:
        """Queue a small job (a lease release): refused only past `RELEASE_CAP`."""
        with self._cond:
            if self._releases >= RELEASE_CAP:
                self.dropped += 1
                return Submitted.FULL
            self._releases += 1
            self._push(_Job(job, None, 0))
        return Submitted.QUEUED

    def _push(self, job: _Job) -> None:
        self._jobs.append(job)
        self.queued += 1
        self._cond.notify()

    def _take(self) -> _Job:
        with self._cond:
            while not self._jobs:
                self._cond.wait()
            job = self._jobs.popleft()
            if job.key is None:
                self._releases -= 1
            else:
                self._keys.discard(job.key)
                self._stores -= 1
                self._bytes -= job.size
            self._running += 1
            return job

    def _run(self) -> None:
        while True:
            job = self._take()
            try:
                job.run()
            except Exception:
                with self._cond:
                    self.failed += 1
                log.debug("background sidecar call failed", exc_info=True)
            finally:
                with self._cond:
                    self._running -= 1
                    if not self._jobs and not self._running:
                        self._idle.notify_all()

    def stats(self) -> QueueStats:
        with self._cond:
            return QueueStats(
                self.queued,
                self.deduplicated,
                self.dropped,
                self.failed,
                len(self._jobs),
                self._bytes,
            )

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait until every queued job ran (for tests and shutdown); False on timeout."""
        with self._cond:
            return self._idle.wait_for(lambda: not self._jobs and not self._running, timeout_s)

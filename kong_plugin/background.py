"""A small bounded pool that runs sidecar writes after the response has gone out.

Stores and lease releases do not change what the client gets, so the response phase hands
them here instead of waiting for the sidecar. The queue is bounded: when the sidecar falls
behind, new jobs are dropped (and counted) rather than piling up in memory. Jobs must not
raise; any exception is swallowed and counted.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger("strata.plugin")


class Background:
    def __init__(self, workers: int = 2, max_queue: int = 1024) -> None:
        self._queue: queue.Queue[Callable[[], object]] = queue.Queue(max_queue)
        self.dropped = 0
        self.failed = 0
        self._workers = [
            threading.Thread(target=self._run, name=f"strata-bg-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in self._workers:
            t.start()

    def submit(self, job: Callable[[], object]) -> bool:
        """Queue `job`; False (and counted) if the queue is full."""
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                job()
            except Exception:
                self.failed += 1
                log.debug("background sidecar call failed", exc_info=True)
            finally:
                self._queue.task_done()

    def join(self) -> None:
        """Wait until every queued job ran (for tests and shutdown)."""
        self._queue.join()

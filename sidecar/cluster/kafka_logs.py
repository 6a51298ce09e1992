"""librdkafka's own log lines, in the sidecar's logs and at a bounded rate.

librdkafka reports every failed connection attempt (every ~50 ms to 1 s while a broker is
down, per client and per broker); handed to `logging` one by one, a broker outage would
flood the log. `CLIENT_LOG` is the logger every Kafka client of Strata is given
(``"logger"`` in its configuration): a `RateFilter` on it lets through one line per
facility and client (``FAIL [rdkafka#consumer-3]``) per `every_s`, with the number of lines
it held back since in ``strata.suppressed``.

Not guaranteed: which of several held-back lines is shown (the first after the pause); the
filter keys on the text librdkafka writes (facility, then the client name in brackets), and
a line of another shape is keyed on its first 40 characters.
"""

from __future__ import annotations

import logging
import threading
import time

from sidecar.core.backoff import LogLimit

__all__ = ["CLIENT_LOG", "RateFilter"]

#: Distinct (facility, client) keys remembered; beyond it the table starts again.
_MAX_KEYS = 1024


class RateFilter(logging.Filter):
    """At most one record per key per `every_s` (see the module docstring). Thread-safe:
    librdkafka logs from its own threads."""

    def __init__(self, every_s: float = 10.0) -> None:
        super().__init__()
        self._every_s = every_s
        self._limits: dict[str, LogLimit] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(record: logging.LogRecord) -> str:
        text = record.getMessage()
        facility, _, rest = text.partition(" ")
        client = rest.split("]", 1)[0] if rest.startswith("[") else ""
        return f"{facility} {client}]" if client else text[:40]

    def filter(self, record: logging.LogRecord) -> bool:
        key = self.key(record)
        with self._lock:
            limit = self._limits.get(key)
            if limit is None:
                if len(self._limits) >= _MAX_KEYS:
                    self._limits.clear()
                limit = self._limits[key] = LogLimit(self._every_s)
            held = limit.take(time.monotonic())
        if held is None:
            return False
        record.__dict__["strata.suppressed"] = held
        return True


CLIENT_LOG = logging.getLogger("strata.sidecar.kafka.client")
CLIENT_LOG.addFilter(RateFilter())

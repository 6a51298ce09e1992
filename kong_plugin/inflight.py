"""Per-request state kept between the access and response phases of one request.

Kong runs both phases of a request against the same plugin server process, so the state
(the stored entry being revalidated, the key, the lease) stays in this process and only a
short token travels through `kong.ctx.shared`. A request whose response phase never runs
(client gone, another plugin exited) leaves its state behind; `put` drops states older than
`max_age_s`, so memory stays bounded by the request rate times that age.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field

from kong_plugin.cache_control import CacheControl
from kong_plugin.credentials import Guard
from kong_plugin.stored import StoredEntry


@dataclass(slots=True)
class RequestState:
    """What the response phase needs to finish a request the access phase started."""

    mode: str  # "store" (miss/refresh/revalidate) or "write" (invalidate on success)
    method: str
    host: str
    path: str
    query: str = ""  # the raw query as sent (no "?"), for the entry's event tags
    key: str = ""
    route: str = ""  # the key's route prefix (kong_plugin.cache_key.route_prefix)
    request_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    request_cc: CacheControl | None = None
    guard: Guard = ""  # the request's credential rule (kong_plugin.credentials.guard)
    request_time: float = 0.0  # the plugin's clock when the access phase started
    fill_lease: bool = False
    stale: StoredEntry | None = None  # the entry being revalidated / kept for stale-if-error
    stale_age_s: float = 0.0  # its age on the sidecar's clock when it was looked up
    looked_up_at: float = 0.0  # the plugin's clock just after that lookup
    stale_if_error: bool = False
    status_word: str = "Miss"  # X-Cache-Status to report if the response is proxied
    fwd: str = "uri-miss"
    client_conditional: bool = False
    debug: bool = False
    origin: str = ""  # the origin's health key (the matched route's id), "" if unknown
    created: float = field(default_factory=time.monotonic)

    def revalidating(
        self, entry: StoredEntry, age_s: float, looked_up_at: float, stale_if_error: bool
    ) -> None:
        """This request asks the upstream to confirm `entry` (the sidecar's age `age_s`
        at `looked_up_at` on the plugin's clock), keeping it for a 304 or an error."""
        self.stale, self.stale_age_s, self.looked_up_at = entry, age_s, looked_up_at
        self.stale_if_error = stale_if_error
        self.status_word = "Refresh"
        self.fwd = "stale"


class InflightTable:
    """Token -> RequestState, thread-safe, with age-based cleanup."""

    def __init__(self, max_age_s: float = 120.0) -> None:
        self._states: dict[str, RequestState] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._max_age = max_age_s
        self._next_sweep = time.monotonic() + max_age_s

    def put(self, state: RequestState) -> str:
        token = f"s{next(self._ids)}"
        with self._lock:
            self._states[token] = state
            now = time.monotonic()
            if now >= self._next_sweep:
                self._next_sweep = now + self._max_age
                cutoff = now - self._max_age
                for t in [t for t, s in self._states.items() if s.created < cutoff]:
                    del self._states[t]
        return token

    def pop(self, token: object) -> RequestState | None:
        if not isinstance(token, str):
            return None
        with self._lock:
            return self._states.pop(token, None)

    def __len__(self) -> int:
        return len(self._states)

"""Per-request state kept between the access and response phases of one request.

The phases of one request may run in different plugin-server workers, so the state
travels with the request in `kong.ctx.shared` (`kong_plugin.carry`); nothing of it stays
in a process, and a request whose response phase never runs leaves nothing behind.
"""

from __future__ import annotations

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
    consumer_id: str = ""  # the authenticated consumer's id, for the outcome ("" none)
    nonce: int = 0  # names the request to its own later phases (`kong_plugin.runtime.answered`)

    def revalidating(
        self, entry: StoredEntry, age_s: float, looked_up_at: float, stale_if_error: bool
    ) -> None:
        """This request asks the upstream to confirm `entry` (the sidecar's age `age_s`
        at `looked_up_at` on the plugin's clock), keeping it for a 304 or an error."""
        self.stale, self.stale_age_s, self.looked_up_at = entry, age_s, looked_up_at
        self.stale_if_error = stale_if_error
        self.status_word = "Refresh"
        self.fwd = "stale"

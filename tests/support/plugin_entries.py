"""Factories for the plugin's decision tests: a stored entry as `kong_plugin.decide` sees
it, a lookup's answer, a request's state, an upstream answer.

What a test does not give is a 200 text entry with body ``hello``, stored at `NOW`, fresh
for 60 s, with no stale windows and no storage TTL of its own. The values are arbitrary: a
test that depends on one passes it explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kong_plugin import decide
from kong_plugin.cacheability import request_decision
from kong_plugin.config import PluginConfig
from kong_plugin.freshness import EntryTiming
from kong_plugin.headers import Headers
from kong_plugin.inflight import RequestState
from kong_plugin.stored import Found, StoredEntry

NOW = 1_700_000_000.0


def entry(
    headers: Mapping[str, str | list[str]] | None = None,
    *,
    ttl: int = 60,
    swr: int = 0,
    sie: int = 0,
    storage_ttl: int = 0,
    body: bytes = b"hello",
    status: int = 200,
    vary: tuple[str, ...] = (),
) -> StoredEntry:
    """A stored response with `headers` (default: ``Content-Type: text/plain`` only)."""
    fields = {"content-type": "text/plain"} if headers is None else dict(headers)
    timing = EntryTiming(NOW, ttl, swr, sie, storage_ttl)
    return StoredEntry(status, Headers.of(fields), body, timing, vary=vary)


def lookup(
    found: StoredEntry | None,
    cfg: PluginConfig,
    *,
    age_s: float = 0.0,
    fill_lease: bool = False,
    headers: Mapping[str, str] | None = None,
    method: str = "GET",
) -> decide.AccessStep:
    """`decide.after_lookup` for a request with `headers` that found `found` `age_s` old."""
    h = Headers.of(dict(headers or {}))
    return decide.after_lookup(
        Found(found, age_s, fill_lease), request_decision(method, h, cfg), "", h, cfg
    )


def revalidating(
    stale: StoredEntry,
    *,
    age_s: float = 100.0,
    stale_if_error: bool = False,
    client_headers: Mapping[str, str] | None = None,
    **fields: Any,
) -> RequestState:
    """The state of a GET that revalidates `stale` (looked up `age_s` old at `NOW`);
    `client_headers` are its own request header lines."""
    lines = [(k.encode(), v.encode()) for k, v in (client_headers or {}).items()]
    state = RequestState(
        "store", "GET", "example.com", "/p", key="v2:r:k", request_time=NOW, **fields
    )
    state.request_headers = lines
    state.revalidating(stale, age_s, NOW, stale_if_error)
    state.client_conditional = any(k.lower().startswith("if-") for k in client_headers or {})
    return state


def upstream(
    status: int, headers: Mapping[str, str | list[str]], *, now: float = NOW, complete: bool = True
) -> decide.Upstream:
    """The upstream's answer as the ``response`` phase reads it, at `now`."""
    return decide.Upstream(status, dict(headers), complete, now)

"""What the client is told: the cache's own response headers, and the exits that answer a
request from a stored entry (pure functions; `kong_plugin.handler` makes the PDK calls).

`cache_headers` are ``X-Cache-Status``, ``X-Cache-Key``, RFC 9211 ``Cache-Status`` and
``Age``, each as the route's ``response_headers`` (or a ``Kong-Debug`` request) asks.
`entry_reply` is the stored response itself, or a 304 when the client's own validators
match it (`kong_plugin.validation`), or the part a ``Range`` asks for (206, or 416 when
unsatisfiable; `kong_plugin.ranges`), framed as `kong_plugin.exits` explains.

Not guaranteed: ``Age`` is whole seconds (RFC 9111 §5.1), however old the entry is to
the millisecond.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kong_plugin.cache_status import XCacheStatus, age_value, cache_status_value
from kong_plugin.exits import (
    ALWAYS_CLEAR,
    KongHeaders,
    framing,
    header_names,
    response_phase_exit,
)
from kong_plugin.headers import Headers, replay_headers
from kong_plugin.ranges import (
    Partial,
    RangeAnswer,
    Unsatisfiable,
    partial_headers,
    select_range,
    unsatisfiable_headers,
)
from kong_plugin.stored import StoredEntry
from kong_plugin.targeted import without_hidden
from kong_plugin.validation import evaluate_conditional, not_modified_response_headers

if TYPE_CHECKING:
    from kong_plugin.config import PluginConfig
    from kong_plugin.inflight import RequestState


@dataclass(frozen=True, slots=True)
class Reply:
    """The arguments of one ``kong.response.exit``."""

    status: int
    body: bytes | str
    headers: Mapping[str, str | list[str]]


@dataclass(frozen=True, slots=True)
class Served:
    """A stored entry about to answer a request, and how.

    `word`/`member`: the ``X-Cache-Status`` and ``Cache-Status`` to send; `age_s` its
    ``Age``. `conditional`: the request headers whose validators may turn the answer into
    a 304, and whose ``Range`` into a 206 or 416 (None: never a 304, no range). `clear`:
    in the ``response`` phase, the response's current header names (the upstream's),
    cleared unless the entry sets them (None in ``access``).
    """

    entry: StoredEntry
    age_s: float
    word: XCacheStatus
    member: str
    conditional: Headers | None = None
    clear: tuple[str, ...] | None = None


def cache_headers(
    cfg: PluginConfig,
    debug: bool,
    word: str,
    key: str,
    member: str | None = None,
    age_s: float | None = None,
) -> dict[str, str]:
    """The cache's own headers this route (or a debug request) shows."""
    rh = cfg.response_headers
    out: dict[str, str] = {}
    if rh.x_cache_status or debug:
        out["X-Cache-Status"] = word
    if (rh.x_cache_key or debug) and key:
        out["X-Cache-Key"] = key
    if (rh.cache_status or debug) and member:
        out["Cache-Status"] = member
    if (rh.age or debug) and age_s is not None:
        out["Age"] = age_value(age_s)
    return out


def bypass_headers(cfg: PluginConfig, debug: bool, reason: str) -> dict[str, str]:
    """The cache stayed out of this request, and why (RFC 9211 ``fwd=bypass`` with a
    ``detail``)."""
    member = cache_status_value(cfg.cache_status_name, fwd="bypass", detail=reason)
    return cache_headers(cfg, debug, XCacheStatus.BYPASS.value, "", member)


def names_to_clear(upstream: Mapping[str, object], complete: bool) -> tuple[str, ...]:
    """What a response-phase exit must remove: the upstream response's header names, plus
    `ALWAYS_CLEAR` when that list may have been cut short."""
    names = header_names(upstream)
    return tuple(names if complete else names + list(ALWAYS_CLEAR))


def _byte_range(served: Served, state: RequestState, cfg: PluginConfig) -> RangeAnswer | None:
    """The part of the entry a ``Range`` request asks for (`kong_plugin.ranges`); None:
    the whole entry (no range, or one to ignore)."""
    request = served.conditional
    if not cfg.serve_ranges or request is None or "range" not in request:
        return None
    entry = served.entry
    return select_range(state.method, request, entry.status, entry.headers, len(entry.body))


def entry_reply(served: Served, state: RequestState, cfg: PluginConfig) -> Reply:
    """End the request with the stored response: a 304 for a matching conditional, else a
    206/416 for a ``Range`` (RFC 9110 §14, `kong_plugin.ranges`; a 304 wins, §13.2.2),
    else the whole response."""
    extra = cache_headers(
        cfg, state.debug, served.word.value, state.key, served.member, served.age_s
    )
    entry = served.entry
    targeted = cfg.targeted  # targeted fields stay stored (reuse needs them), not replayed
    out: KongHeaders
    if served.conditional is not None and evaluate_conditional(
        served.conditional, entry.status, entry.headers, method=state.method
    ):
        status, body = 304, b""
        out = dict(without_hidden(not_modified_response_headers(entry.headers), targeted).to_kong())
    else:
        status, body = entry.status, entry.body
        replayed = without_hidden(replay_headers(entry.headers), targeted)
        part = _byte_range(served, state, cfg)
        if isinstance(part, Partial):
            status, body, replayed = 206, part.slice(body), partial_headers(replayed, part)
        elif isinstance(part, Unsatisfiable):
            status, body, replayed = 416, b"", unsatisfiable_headers(replayed, part)
        out = dict(replayed.to_kong())
    out.update(extra)
    body, length = framing(state.method, status, body)
    out.update(length)
    if served.clear is not None:
        out = response_phase_exit(out, served.clear)
    return Reply(status, body, out)


def only_if_cached_miss(state: RequestState, cfg: PluginConfig) -> Reply:
    """RFC 9111 §5.2.1.7: no stored response may answer, so 504."""
    return Reply(504, "", cache_headers(cfg, state.debug, XCacheStatus.MISS.value, state.key))


def origin_unreachable(state: RequestState, cfg: PluginConfig, member: str) -> Reply:
    """RFC 9111 §5.2.2.2: the stored response may not be served stale and the origin is
    down (`kong_plugin.origin`), so 504 (``X-Cache-Status: Refresh``, as for any entry
    found that could not answer by itself; `member` is the ``Cache-Status``)."""
    word = XCacheStatus.REFRESH.value
    return Reply(504, "", cache_headers(cfg, state.debug, word, state.key, member))

"""Freshness and age (RFC 9111 §4.2) and when a stored response may be reused (§4.2.4,
RFC 5861), for a *shared* cache.

Store time (`freshness_lifetime`, `corrected_initial_age`, `stale_windows`):

* lifetime (§4.2.1): ``s-maxage`` > ``max-age`` > ``Expires`` - ``Date`` (``Date`` absent:
  the time the response was received). An ``s-maxage``/``max-age`` with no valid value,
  or an invalid ``Expires`` (e.g. ``0``), gives 0 -- stale (an invalid ``Expires`` does
  not matter when either directive is there). Several ``Expires`` lines: the earliest.
  Directives from a targeted field (RFC 9213, `kong_plugin.targeted`) ignore ``Expires``;
* heuristic lifetime (§4.2.2), only when there is no explicit one and the status is
  heuristically cacheable (`HEURISTIC_STATUSES`) or the response is ``public``: 10% of
  ``Date`` - ``Last-Modified``, at most `HEURISTIC_CAP` (1 day); a ``public`` response
  without ``Last-Modified`` gets ``cache_ttl``; otherwise none (Kong's proxy-cache does not
  store such responses either);
* age (§4.2.3): apparent_age = max(0, response_time - Date); corrected_age_value = Age +
  response_delay; corrected_initial_age = max of the two; current_age =
  corrected_initial_age + resident_time. ``Age`` is the field's first member (§5.1); an
  invalid one counts as `DELTA_MAX`, so the response is stale on arrival. An entry's
  `EntryTiming.stored_at` is back-dated by the initial age, so "now - stored_at" (what the
  sidecar reports) *is* current_age;
* stale windows (RFC 5861): with ``cache_control`` the larger of the response directive
  and the route setting; ``must-revalidate`` (§5.2.2.2), ``proxy-revalidate`` (§5.2.2.8),
  ``s-maxage`` (which implies proxy-revalidate, §5.2.2.10) and ``no-cache`` forbid serving
  stale at all (`stale_prohibited`): no window, not even the response's own explicit
  ``stale-while-revalidate``/``stale-if-error`` beside ``s-maxage``. Without
  ``cache_control`` only the route's windows count.

Reuse (`evaluate_reuse`), request directives only with ``cache_control``: response
``no-cache`` or request ``no-cache`` -> revalidate; request ``max-age`` exceeded ->
revalidate; fresh -> serve unless ``min-fresh`` fails; stale -> serve within
``stale-while-revalidate`` (and refresh in the background), or within the client's
``max-stale`` unless forbidden, else revalidate. Whether the entry may stand in for an
upstream error (500/502/503/504 or no answer) is reported separately; the request's
``stale-if-error`` may widen that window unless stale is forbidden. Without
``storage_ttl``, an entry past its freshness and both stale windows is only there to be
revalidated (the keep window, ``keep_ttl``, §4.3): neither ``max-stale`` nor a request's
``stale-if-error`` serves it (with ``storage_ttl`` set they may, as far as it keeps it).

Why the sidecar's verdict (HIT/STALE, its clock, ms) and this module's both exist: the
sidecar must judge entries without seeing the request, to expire them and to hand the fill
lease to the first request that finds one stale. Only the plugin sees the request's and
the stored response's ``Cache-Control`` (``max-age``, ``min-fresh``, ``max-stale``,
``no-cache``), so the RFC 9111 reuse decision (`evaluate_reuse`) is made here. Both use
the same age, the sidecar's (``LookupResponse.age_ms``, converted to seconds once by
`kong_plugin.wire`); later in a request (after the origin answered) an entry's age is that
plus the time since on the plugin's clock (`age_later`).

Not guaranteed: the ``Date``-based apparent age trusts the upstream's clock (RFC 9111
behaviour); a skewed upstream clock ages entries. Times are float seconds (the one unit
here) from the caller's clock; nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from kong_plugin.cache_control import DELTA_MAX, EMPTY, CacheControl, parse_delta_seconds
from kong_plugin.headers import HeaderInput, Headers
from kong_plugin.http_date import parse_http_date

if TYPE_CHECKING:
    from kong_plugin.config import PluginConfig

#: RFC 9110 §15.1: status codes heuristically cacheable by default.
HEURISTIC_STATUSES = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})
HEURISTIC_FRACTION = 0.1
HEURISTIC_CAP = 86400
#: RFC 5861 §4: the statuses that count as an error for stale-if-error.
ERROR_STATUSES = frozenset({500, 502, 503, 504})

LifetimeSource = Literal["s-maxage", "max-age", "expires", "heuristic", "default", "none"]


@dataclass(frozen=True, slots=True)
class Lifetime:
    """A freshness lifetime in seconds and where it came from."""

    seconds: int
    source: LifetimeSource

    @property
    def explicit(self) -> bool:
        return self.source in ("s-maxage", "max-age", "expires")


def _clamp(seconds: float) -> int:
    return int(min(max(seconds, 0), DELTA_MAX))


def freshness_lifetime(
    headers: HeaderInput,
    cc: CacheControl,
    config: PluginConfig,
    *,
    status: int,
    received_at: float,
) -> Lifetime:
    """The response's freshness lifetime for a shared cache (§4.2.1, §4.2.2)."""
    if cc.s_maxage is not None or "s-maxage" in cc.invalid:
        return Lifetime(cc.s_maxage or 0, "s-maxage")
    if cc.max_age is not None or "max-age" in cc.invalid:
        return Lifetime(cc.max_age or 0, "max-age")
    h = Headers.of(headers)
    date = parse_http_date(h.get("date"), received_at)
    base = received_at if date is None else date
    # RFC 9213 §2.2: a targeted field replaces Cache-Control *and* Expires
    expires_lines = () if cc.targeted else h.get_all("expires")
    if expires_lines:
        times = [parse_http_date(v, received_at) for v in expires_lines]
        valid = [t for t in times if t is not None]
        if len(valid) != len(times):
            return Lifetime(0, "expires")
        return Lifetime(_clamp(min(valid) - base), "expires")
    if status not in HEURISTIC_STATUSES and not cc.public:
        return Lifetime(0, "none")
    last_modified = parse_http_date(h.get("last-modified"), received_at)
    if last_modified is not None:
        seconds = (base - last_modified) * HEURISTIC_FRACTION
        return Lifetime(min(_clamp(seconds), HEURISTIC_CAP), "heuristic")
    if cc.public:
        return Lifetime(config.cache_ttl, "default")
    return Lifetime(0, "none")


def age_value(headers: HeaderInput) -> int:
    """The upstream's ``Age`` (§5.1): 0 when absent; else the first member of the field
    (the first non-empty one of all its lines, split on commas), as delta-seconds capped
    at `DELTA_MAX`. An invalid first member (``abc``, ``-1``, ``1.5``, an empty field) gives
    `DELTA_MAX`: an age beyond any lifetime, so the response is stale on arrival."""
    lines = Headers.of(headers).get_all("age")
    if not lines:
        return 0
    members = (m.strip(" \t") for line in lines for m in line.split(","))
    first = next((m for m in members if m), "")
    seconds = parse_delta_seconds(first)
    return DELTA_MAX if seconds is None else seconds


def corrected_initial_age(
    headers: HeaderInput, *, request_time: float, response_time: float
) -> int:
    """§4.2.3 corrected_initial_age, in whole seconds (floor)."""
    h = Headers.of(headers)
    date = parse_http_date(h.get("date"), response_time)
    apparent_age = max(0.0, response_time - (response_time if date is None else date))
    response_delay = max(0.0, response_time - request_time)
    corrected_age = age_value(h) + response_delay
    return _clamp(max(apparent_age, corrected_age))


def current_age(
    headers: HeaderInput, *, request_time: float, response_time: float, now: float
) -> int:
    """§4.2.3 current_age = corrected_initial_age + resident_time."""
    initial = corrected_initial_age(headers, request_time=request_time, response_time=response_time)
    return _clamp(initial + max(0.0, now - response_time))


def stale_prohibited(cc: CacheControl) -> bool:
    """Directives that forbid serving this response stale at all (§4.2.4): under
    ``stale-while-revalidate`` or ``stale-if-error`` (the response's, the route's or the
    request's) and under a client's ``max-stale``: ``must-revalidate`` (§5.2.2.2),
    ``proxy-revalidate`` (§5.2.2.8), ``s-maxage`` (which implies proxy-revalidate,
    §5.2.2.10) and ``no-cache`` (§5.2.2.4: validated before every reuse)."""
    return (
        cc.no_cache
        or cc.must_revalidate
        or cc.proxy_revalidate
        or cc.s_maxage is not None
        or "s-maxage" in cc.invalid
    )


def stale_windows(cc: CacheControl, config: PluginConfig) -> tuple[int, int]:
    """Effective (stale-while-revalidate, stale-if-error) seconds for a stored response."""
    if not config.cache_control:
        return config.stale_while_revalidate, config.stale_if_error
    if stale_prohibited(cc):
        return 0, 0
    swr, sie = cc.stale_while_revalidate or 0, cc.stale_if_error or 0
    return max(swr, config.stale_while_revalidate), max(sie, config.stale_if_error)


@dataclass(frozen=True, slots=True)
class EntryTiming:
    """The freshness facts stored with an entry; field for field the proto's `Entry`.

    `stored_at` is back-dated by the initial age; `ttl` is the whole freshness lifetime;
    `storage_ttl` is how long to keep the entry at all, also counted from `stored_at`.
    """

    stored_at: float
    ttl: int
    stale_while_revalidate: int = 0
    stale_if_error: int = 0
    storage_ttl: int = 0

    def age(self, now: float) -> float:
        """current_age at `now`."""
        return max(0.0, now - self.stored_at)

    def to_ms(self) -> dict[str, int]:
        """Keyword arguments for the proto ``Entry`` timing fields."""
        return {
            "stored_at_ms": int(self.stored_at * 1000),
            "ttl_ms": self.ttl * 1000,
            "stale_while_revalidate_ms": self.stale_while_revalidate * 1000,
            "stale_if_error_ms": self.stale_if_error * 1000,
            "storage_ttl_ms": self.storage_ttl * 1000,
        }

    @classmethod
    def from_ms(
        cls,
        stored_at_ms: int,
        ttl_ms: int,
        stale_while_revalidate_ms: int = 0,
        stale_if_error_ms: int = 0,
        storage_ttl_ms: int = 0,
    ) -> EntryTiming:
        """Rebuild from proto ``Entry`` fields (milliseconds)."""
        return cls(
            stored_at_ms / 1000,
            ttl_ms // 1000,
            stale_while_revalidate_ms // 1000,
            stale_if_error_ms // 1000,
            storage_ttl_ms // 1000,
        )


def age_later(age_at_lookup: float, looked_up_at: float, now: float) -> float:
    """The age at `now` of an entry the sidecar reported `age_at_lookup` seconds old when
    the plugin's clock read `looked_up_at`: only a duration of the plugin's clock is added,
    so an offset between the two clocks does not matter."""
    return age_at_lookup + max(0.0, now - looked_up_at)


def is_fresh(timing: EntryTiming, age: float) -> bool:
    """Fresh while current_age < lifetime (§4.2)."""
    return age < timing.ttl


Action = Literal["fresh", "stale", "revalidate"]


@dataclass(frozen=True, slots=True)
class Reuse:
    """What to do with a stored entry for this request.

    ``fresh``: serve it. ``stale``: serve it stale (`background_revalidate` says whether to
    refresh it after answering). ``revalidate``: go upstream (conditionally if the entry
    has validators). `stale_if_error` says whether the entry may be served instead if the
    upstream then fails. `ttl` is the remaining freshness (negative when stale, as in RFC
    9211's ``ttl``); `detail` names the rule that decided.
    """

    action: Action
    age: int
    ttl: int
    background_revalidate: bool = False
    stale_if_error: bool = False
    detail: str = ""


def evaluate_reuse(
    timing: EntryTiming,
    age: float,
    stored_cc: CacheControl,
    request_cc: CacheControl,
    config: PluginConfig,
) -> Reuse:
    """Decide how a stored entry may answer a request (module docstring, "Reuse")."""
    if not config.cache_control:
        stored_cc = request_cc = EMPTY
    age_s = int(age)
    ttl = timing.ttl - age_s
    staleness = max(0.0, age - timing.ttl)
    prohibited = stale_prohibited(stored_cc)
    # without storage_ttl, an entry past its windows is only kept to be revalidated
    kept = config.storage_ttl is None and staleness > max(
        timing.stale_while_revalidate, timing.stale_if_error
    )
    sie_window = 0 if prohibited else timing.stale_if_error
    if not prohibited and not kept and request_cc.stale_if_error is not None:
        sie_window = max(sie_window, request_cc.stale_if_error)
    sie = sie_window > 0 and staleness <= sie_window

    def decide(action: Action, detail: str, background: bool = False) -> Reuse:
        return Reuse(action, age_s, ttl, background, sie, detail)

    if stored_cc.no_cache:
        return decide("revalidate", "no-cache")
    if request_cc.no_cache:
        return decide("revalidate", "request-no-cache")
    if request_cc.max_age is not None and age > request_cc.max_age:
        return decide("revalidate", "request-max-age")
    if age < timing.ttl:
        if request_cc.min_fresh is not None and timing.ttl - age < request_cc.min_fresh:
            return decide("revalidate", "request-min-fresh")
        return decide("fresh", "fresh")
    if request_cc.min_fresh is not None:
        return decide("revalidate", "request-min-fresh")
    swr = 0 if prohibited else timing.stale_while_revalidate
    if swr > 0 and staleness <= swr:
        return decide("stale", "stale-while-revalidate", background=True)
    max_stale = None if prohibited or kept else request_cc.max_stale
    if max_stale is not None and staleness <= max_stale:
        return decide("stale", "max-stale")
    return decide("revalidate", "must-revalidate" if prohibited else "stale")

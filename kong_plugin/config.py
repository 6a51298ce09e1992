"""The typed, frozen plugin configuration and the one function that builds it.

`parse_config(raw)` takes the config map Kong hands a plugin instance (defaults already
filled, unset fields null, plus Kong's own keys such as ``route_id`` and ``__seq__``),
applies `kong_plugin.schema.SCHEMA` (defaults, types, ranges, lengths -- never restated
here), re-checks the schema's format rules in Python, runs the cross-field checks Kong's
schema language cannot express for an external plugin, and precompiles what the request
path needs (method/status sets, content-type matchers, lower-cased header names, one
regex for all ``ignore_query_params`` globs).

Format rules -- Kong 3.9 already enforces these at config load through the schema's Lua
patterns (``match_all``/``match_none``/``match_any``, see `kong_plugin.schema`); they are
repeated here as the plugin's own guard (for direct callers, and for configs a database
stored before these rules existed), with the same messages, and are never more lenient
than the patterns:

* ``sidecar.address`` is ``unix:/abs/path`` or ``unix:///abs/path`` (no spaces or
  control characters in the path) or ``host:port`` (host name, IPv4, or ``[IPv6]``;
  port 1-65535 in at most 5 digits);
* ``vary_headers``, ``tag_headers`` and ``strip_request_headers`` entries are header field
  names (RFC 9110 tokens);
  ``cache_status_name`` is an RFC 8941 sf-token; static ``tags`` are printable ASCII
  without spaces or commas (the sidecar's tag alphabet); ``vary_query_params`` and
  ``ignore_query_params`` names hold no control characters;
* every ``content_type`` entry starts like a media range (what the schema checks) and
  parses as one, parameters included (stricter than the schema: ``;`` parameters are a
  repeated group that a Lua pattern cannot express).

Plugin-side only -- cross-field rules that would need a Lua entity check, which cannot
cross the plugin server's JSON dump (each failure is a `ConfigError` naming the field):

* ``storage_ttl`` must be >= ``cache_ttl`` when set;
* unset, the storage TTL is ``cache_ttl`` plus the larger stale window: that sum must not
  exceed `MAX_TTL_SECONDS` (the sidecar's default ``max_ttl_seconds``: it would clamp
  every store, counted in ``strata_clamped_total``, and entries would expire earlier than
  configured); the message names the larger stale window;
* a ``vary_query_params`` name may not also match an ``ignore_query_params`` pattern.

Decisions recorded as warnings (in `PluginConfig.warnings`, for the handler to log once):
``request_method`` may hold POST/PATCH/PUT, as Kong allows -- they are cached under their
own method with the body NOT in the key, and are not treated as writes for invalidation;
HEAD without GET (HEAD is only ever answered from entries a GET stored); response codes
that are never stored (1xx, 206, 304); a ``storage_ttl`` shorter than the stale windows.

Not guaranteed: these checks run when the plugin server starts an instance (on real Kong,
at the first request that uses it), not when the Admin API accepts the config; only the
plugin-side rules above and the ``content_type`` parameters can still fail there for a
config Kong accepted, and the handler must fail open on a `ConfigError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from kong_plugin.errors import ConfigError
from kong_plugin.mime import MediaRange, parse_media_range
from kong_plugin.poisoning import StripRule, strip_set
from kong_plugin.schema import (
    ERR_ADDRESS,
    ERR_CONTROL,
    ERR_HEADER_NAME,
    ERR_MEDIA_RANGE,
    ERR_PORT,
    ERR_SF_TOKEN,
    ERR_TAG,
    ERR_TAG_COMMA,
    MAX_TTL_SECONDS,
    SCHEMA,
    apply_schema,
    field_names,
)

ConsumerScope = Literal["auto", "always", "never"]
CookieRequests = Literal["explicit", "ignore", "bypass"]

#: Keys Kong's plugin iterator adds to every config map (reference §7.1).
KONG_CONFIG_KEYS = frozenset(
    {
        "route_id",
        "service_id",
        "consumer_id",
        "plugin_instance_name",
        "__plugin_id",
        "__ws_id",
        "__key__",
        "__seq__",
    }
)
_KNOWN = frozenset(field_names())
# Python twins of the schema's Lua patterns (kong_plugin.schema), used with fullmatch/match.
_TCHAR = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
_TOKEN_RE = re.compile(rf"{_TCHAR}+")
_SF_TOKEN_RE = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_TAG_RE = re.compile(r"[\x21-\x7e]+")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_MEDIA_HEAD_RE = re.compile(rf"[ \t]*(?:\*[ \t]*\Z|{_TCHAR}+/{_TCHAR}+[ \t]*(?:;|\Z))")
_UNIX_RE = re.compile(r"unix:(?:/|///)[^/\x00-\x1f\x7f ][^\x00-\x1f\x7f ]*")
_HOST_PORT_RE = re.compile(
    # host names may hold "_": Docker and Compose service names do, and they resolve
    r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9._\-]*[A-Za-z0-9])?):([0-9]{1,5})"
)


@dataclass(frozen=True, slots=True)
class SidecarConfig:
    """Where the sidecar listens, how long one call may take, and the uid it must run as
    (None: the plugin server's own effective uid)."""

    address: str
    timeout_ms: int
    uid: int | None = None

    @property
    def timeout_s(self) -> float:
        return self.timeout_ms / 1000.0


@dataclass(frozen=True, slots=True)
class ResponseHeadersConfig:
    """Which diagnostic headers to send (``Kong-Debug`` requests get them regardless)."""

    age: bool
    x_cache_status: bool
    x_cache_key: bool
    cache_status: bool


@dataclass(frozen=True, slots=True)
class TargetedConfig:
    """RFC 9213 targeted fields: Strata's own (`field`) then, if enabled,
    ``CDN-Cache-Control``; which of them are passed on to clients."""

    field: str = "Strata-Cache-Control"
    cdn_cache_control: bool = True
    forward_field: bool = False
    forward_cdn_cache_control: bool = True

    @property
    def names(self) -> tuple[str, ...]:
        """Lower-cased field names in precedence order."""
        out = [self.field.lower()]
        if self.cdn_cache_control and "cdn-cache-control" not in out:
            out.append("cdn-cache-control")
        return tuple(out)


@dataclass(frozen=True, slots=True)
class BackgroundRefreshConfig:
    """Background stale-while-revalidate refreshes (`kong_plugin.refresh`)."""

    enabled: bool = True
    forward_headers: tuple[str, ...] = ()
    timeout_ms: int = 10000
    max_concurrent: int = 16


@dataclass(frozen=True, slots=True)
class AnalyticsConfig:
    """Per-request analytics events (`kong_plugin.analytics`): the share of requests
    sampled (0.0 off, 1.0 all), and the id of the service the plugin is configured on
    (Kong puts it in the config map of a service-level plugin; empty for a route-level or
    global one, where knowing it would cost a PDK call per request)."""

    sample_rate: float = 0.0
    service_id: str = ""


@dataclass(frozen=True, slots=True)
class PluginConfig:
    """One plugin instance's settings. Field names follow the schema (snake_case)."""

    # proxy-cache fields
    response_code: tuple[int, ...]
    request_method: tuple[str, ...]
    content_type: tuple[str, ...]
    cache_ttl: int
    strategy: str
    cache_control: bool
    ignore_uri_case: bool
    storage_ttl: int | None
    memory_dictionary_name: str
    vary_query_params: tuple[str, ...] | None
    vary_headers: tuple[str, ...] | None
    response_headers: ResponseHeadersConfig
    # Strata fields
    sidecar: SidecarConfig
    stale_while_revalidate: int
    stale_if_error: int
    tags: tuple[str, ...]
    tag_headers: tuple[str, ...]
    invalidate_on_write: bool
    event_tags: bool
    ignore_query_params: tuple[str, ...]
    consumer_scope: ConsumerScope
    max_body_bytes: int
    coalesce_wait_ms: int
    cache_status_name: str
    strip_request_headers: tuple[str, ...]
    cookie_requests: CookieRequests
    keep_ttl: int
    cache_set_cookie: bool
    near_cache: bool
    serve_ranges: bool
    targeted: TargetedConfig
    background_refresh: BackgroundRefreshConfig
    # precompiled for the request path
    methods: frozenset[str] = field(repr=False)
    status_codes: frozenset[int] = field(repr=False)
    content_type_ranges: tuple[MediaRange, ...] = field(repr=False)
    vary_header_names: tuple[str, ...] = field(repr=False)
    vary_query_names: frozenset[str] | None = field(repr=False)
    ignore_query_re: re.Pattern[str] | None = field(repr=False, compare=False)
    tag_header_names: tuple[str, ...] = field(repr=False)
    strip_header_names: StripRule = field(repr=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)
    analytics: AnalyticsConfig = AnalyticsConfig()

    def query_param_ignored(self, name: str) -> bool:
        """True if `name` matches an ``ignore_query_params`` pattern."""
        return self.ignore_query_re is not None and self.ignore_query_re.fullmatch(name) is not None


def compile_globs(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    """One anchored regex for glob `patterns` (``*`` any run, ``?`` one character)."""
    if not patterns:
        return None
    parts = []
    for pattern in patterns:
        regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
        parts.append(f"(?:{regex})")
    return re.compile("|".join(parts), re.DOTALL)


def _unique(values: list[Any]) -> tuple[Any, ...]:
    return tuple(dict.fromkeys(values))


def _check_address(address: str) -> None:
    if _UNIX_RE.fullmatch(address):
        return
    m = _HOST_PORT_RE.fullmatch(address)
    if m is None:
        raise ConfigError("sidecar.address", f"{address!r} {ERR_ADDRESS}")
    if not 1 <= int(m.group(1)) <= 65535:
        raise ConfigError("sidecar.address", f"{ERR_PORT}, got {m.group(1)}")


def _check_tokens(name: str, values: list[str]) -> None:
    for i, value in enumerate(values):
        if not _TOKEN_RE.fullmatch(value):
            raise ConfigError(f"{name}[{i}]", f"{value!r} {ERR_HEADER_NAME}")


#: Fields with a meaning of their own: as Strata's targeted field they would be parsed as
#: cache directives and removed from responses (`kong_plugin.targeted`).
TARGETED_FORBIDDEN = frozenset(
    {
        "cache-control",
        "cdn-cache-control",
        "pragma",
        "expires",
        "age",
        "date",
        "etag",
        "last-modified",
        "vary",
        "set-cookie",
        "set-cookie2",
        "location",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-authenticate",
        "www-authenticate",
        # Strata's own response headers
        "cache-status",
        "x-cache-status",
        "x-cache-key",
        # security and cross-origin policy a client relies on
        "strict-transport-security",
        "content-security-policy",
        "link",
    }
)


def _check_targeted_field(name: str) -> None:
    low = name.lower()
    if low in TARGETED_FORBIDDEN or low.startswith(("content-", "access-control-")):
        raise ConfigError(
            "targeted_cache_control.field",
            f"{name!r} is a field with a meaning of its own; name a field of this cache's "
            "own, such as Strata-Cache-Control",
        )


def _check_no_controls(name: str, values: list[str]) -> None:
    for i, value in enumerate(values):
        if _CONTROL_RE.search(value):
            raise ConfigError(f"{name}[{i}]", f"{value!r} {ERR_CONTROL}")


def _check_tag(index: int, tag: str) -> None:
    if "," in tag:  # the schema's match_none runs before its match_all, so this first
        raise ConfigError(f"tags[{index}]", f"{tag!r} {ERR_TAG_COMMA}")
    if not _TAG_RE.fullmatch(tag):
        raise ConfigError(f"tags[{index}]", f"{tag!r} {ERR_TAG}")


def _check_derived_storage_ttl(c: dict[str, Any]) -> None:
    """Without ``storage_ttl``, entries are kept ``cache_ttl`` + the larger stale window:
    above the sidecar's default ``max_ttl_seconds`` every store would be clamped."""
    if c["storage_ttl"] is not None:
        return
    window = max(("stale_while_revalidate", "stale_if_error"), key=lambda name: c[name])
    keep = c["cache_ttl"] + c[window]
    if keep > MAX_TTL_SECONDS:
        raise ConfigError(
            window,
            f"cache_ttl ({c['cache_ttl']}) plus {window} ({c[window]}) keeps entries {keep} s, "
            f"above the {MAX_TTL_SECONDS} s (365 days) the sidecar accepts by default; "
            "shorten one or set storage_ttl",
        )


def _unknown_keys(raw: Mapping[str, Any], strict: bool) -> list[str]:
    notes = []
    for key in raw:
        if key in _KNOWN or key in KONG_CONFIG_KEYS or str(key).startswith("__"):
            continue
        if strict:
            raise ConfigError(str(key), "unknown field")
        notes.append(f"{key}: unknown field ignored")
    return notes


def _warnings(c: dict[str, Any], methods: tuple[str, ...]) -> list[str]:
    notes = []
    unsafe = [m for m in methods if m in ("POST", "PATCH", "PUT")]
    if unsafe:
        notes.append(
            f"request_method: {', '.join(unsafe)} responses are cached as in Kong's proxy-cache; "
            "the request body is not part of the cache key and these requests do not "
            "invalidate anything"
        )
    if "HEAD" in methods and "GET" not in methods:
        notes.append(
            "request_method: HEAD without GET never hits (HEAD is served from GET entries)"
        )
    never = [s for s in c["response_code"] if s < 200 or s in (206, 304)]
    if never:
        notes.append(f"response_code: {never} are never stored (interim, partial or 304)")
    storage = c["storage_ttl"]
    windows = max(c["stale_while_revalidate"], c["stale_if_error"])
    if storage is not None and windows and storage < c["cache_ttl"] + windows:
        notes.append(
            "storage_ttl: shorter than cache_ttl plus the stale windows; stale copies expire early"
        )
    return notes


def parse_config(raw: Mapping[str, Any], *, strict: bool = False) -> PluginConfig:
    """Build a `PluginConfig` from Kong's config map; raise `ConfigError` if invalid.

    With `strict`, keys that are neither schema fields nor Kong's own keys are errors
    (use it to check a ``kong.yml`` offline); otherwise they become warnings.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError("config", f"expected a record, got {type(raw).__name__}")
    notes = _unknown_keys(raw, strict)
    c = apply_schema(SCHEMA, raw)

    if c["storage_ttl"] is not None and c["storage_ttl"] < c["cache_ttl"]:
        raise ConfigError(
            "storage_ttl",
            f"must be >= cache_ttl ({c['cache_ttl']}) when set, got {c['storage_ttl']}",
        )
    _check_derived_storage_ttl(c)
    ranges = []
    for i, value in enumerate(c["content_type"]):
        if not _MEDIA_HEAD_RE.match(value):
            raise ConfigError(f"content_type[{i}]", f"{value!r} {ERR_MEDIA_RANGE}")
        parsed = parse_media_range(value)
        if parsed is None:
            raise ConfigError(f"content_type[{i}]", f"{value!r} is not a media type")
        ranges.append(parsed)
    _check_tokens("vary_headers", c["vary_headers"] or [])
    _check_tokens("tag_headers", c["tag_headers"])
    _check_tokens("strip_request_headers", c["strip_request_headers"])
    _check_tokens("background_refresh.forward_headers", c["background_refresh"]["forward_headers"])
    _check_tokens("targeted_cache_control.field", [c["targeted_cache_control"]["field"]])
    _check_targeted_field(c["targeted_cache_control"]["field"])
    vary_headers = None if c["vary_headers"] is None else _unique(c["vary_headers"])
    tag_headers = _unique(c["tag_headers"])
    for i, tag in enumerate(c["tags"]):
        _check_tag(i, tag)
    if not _SF_TOKEN_RE.fullmatch(c["cache_status_name"]):
        raise ConfigError("cache_status_name", f"{c['cache_status_name']!r} {ERR_SF_TOKEN}")
    _check_address(c["sidecar"]["address"])

    _check_no_controls("ignore_query_params", c["ignore_query_params"])
    _check_no_controls("vary_query_params", c["vary_query_params"] or [])
    ignore = _unique(c["ignore_query_params"])
    ignore_re = compile_globs(ignore)
    vary_query = None if c["vary_query_params"] is None else _unique(c["vary_query_params"])
    if vary_query and ignore_re is not None:
        for name in vary_query:
            if ignore_re.fullmatch(name):
                raise ConfigError(
                    "vary_query_params",
                    f"{name!r} is also matched by ignore_query_params; remove it from one of them",
                )

    methods = _unique(c["request_method"])
    rh = c["response_headers"]
    return PluginConfig(
        response_code=_unique(c["response_code"]),
        request_method=methods,
        content_type=tuple(c["content_type"]),
        cache_ttl=c["cache_ttl"],
        strategy=c["strategy"],
        cache_control=c["cache_control"],
        ignore_uri_case=c["ignore_uri_case"],
        storage_ttl=c["storage_ttl"],
        memory_dictionary_name=c["memory"]["dictionary_name"],
        vary_query_params=vary_query,
        vary_headers=vary_headers,
        response_headers=ResponseHeadersConfig(
            age=rh["age"],
            x_cache_status=rh["X-Cache-Status"],
            x_cache_key=rh["X-Cache-Key"],
            cache_status=rh["Cache-Status"],
        ),
        sidecar=SidecarConfig(**c["sidecar"]),
        stale_while_revalidate=c["stale_while_revalidate"],
        stale_if_error=c["stale_if_error"],
        tags=_unique(c["tags"]),
        tag_headers=tag_headers,
        invalidate_on_write=c["invalidate_on_write"],
        event_tags=c["event_tags"],
        ignore_query_params=ignore,
        consumer_scope=c["consumer_scope"],
        max_body_bytes=c["max_body_bytes"],
        coalesce_wait_ms=c["coalesce_wait_ms"],
        cache_status_name=c["cache_status_name"],
        strip_request_headers=_unique(c["strip_request_headers"]),
        cookie_requests=c["cookie_requests"],
        keep_ttl=c["keep_ttl"],
        cache_set_cookie=c["cache_set_cookie"],
        near_cache=c["near_cache"],
        serve_ranges=c["serve_ranges"],
        targeted=TargetedConfig(**c["targeted_cache_control"]),
        background_refresh=BackgroundRefreshConfig(
            enabled=c["background_refresh"]["enabled"],
            forward_headers=_unique(c["background_refresh"]["forward_headers"]),
            timeout_ms=c["background_refresh"]["timeout_ms"],
            max_concurrent=c["background_refresh"]["max_concurrent"],
        ),
        methods=frozenset(methods),
        status_codes=frozenset(c["response_code"]),
        content_type_ranges=tuple(ranges),
        vary_header_names=tuple(sorted({h.lower() for h in vary_headers or ()})),
        vary_query_names=frozenset(vary_query) if vary_query else None,
        ignore_query_re=ignore_re,
        tag_header_names=tuple(dict.fromkeys(h.lower() for h in tag_headers)),
        strip_header_names=strip_set(c["strip_request_headers"], vary_headers or ()),
        warnings=tuple(notes + _warnings(c, methods)),
        analytics=_analytics(c["analytics"], raw.get("service_id")),
    )


def _analytics(c: Mapping[str, Any], service_id: Any) -> AnalyticsConfig:
    """The ``analytics`` record (its range checked by the schema) and the plugin's service
    id from Kong's own keys (anything but a non-empty string of at most 128 bytes: none)."""
    service = service_id if isinstance(service_id, str) and 0 < len(service_id) <= 128 else ""
    return AnalyticsConfig(sample_rate=float(c["sample_rate"]), service_id=service)


#: The configuration with every default (handy for tests and for the handler's fallback).
def default_config() -> PluginConfig:
    """`parse_config({})`: every field at its schema default."""
    return parse_config({})

"""Sidecar configuration: every setting, its default and its check, in one place.

Sources, later ones winning: built-in defaults < a TOML file (`--config` / `STRATA_CONFIG`)
< `STRATA_<NAME>` environment variables < command-line flags `--<name>`. Everything is
checked once, at start-up; a bad value raises `ConfigError` naming the setting and where it
came from. Nothing here is re-read while the sidecar runs.

Every numeric setting has a `Range` (finite, minimum and maximum in its unit; durations
take units, see `sidecar.core.quantities`), and the message of a refused number states it. A
secret setting (`secret=True`: Redis URL, PostgreSQL DSN) is masked in `redacted()`, left
out of `repr()`, and never quoted in a `ConfigError` (`sidecar.core.redact`).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sidecar.core.errors import ConfigError
from sidecar.core.quantities import Range, count, milliseconds, seconds, whole_seconds
from sidecar.core.redact import Scrubber, redact

ENV_PREFIX = "STRATA_"
#: Environment names under STRATA_ that belong to other components and are not ours.
FOREIGN_ENV_PREFIXES = ("STRATA_TEST_", "STRATA_PLUGIN_", "STRATA_BENCH_", "STRATA_KONGSIM_")
#: Not a setting but where the settings file is.
CONFIG_FILE_ENV = "STRATA_CONFIG"
#: The node-local default shared with the plugin's `sidecar.address` default.
DEFAULT_LISTEN = "unix:/run/strata/sidecar.sock"

REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")

KIB, MIB, GIB, TIB = 1024, 1024**2, 1024**3, 1024**4
DAY = 24 * 3600
MINUTE_MS = 60_000
#: Upper bounds of `max_body_bytes` and `max_header_bytes`: the gRPC message limit derived
#: from them (`sidecar.app.max_message_bytes`, about twice their sum) must fit a C int.
MAX_BODY_BYTES = 512 * MIB
MAX_HEADER_BYTES = 16 * MIB

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE | re.ASCII)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """'256MiB', '64k', '1g', '1048576' -> bytes (binary units: k = 1024)."""
    m = _SIZE_RE.match(text)
    if not m:
        raise ValueError(f"not a size: {text!r} (use e.g. 268435456, 256MiB, 64k)")
    unit = (m.group(2) or "").lower().rstrip("b").rstrip("i")
    return int(m.group(1)) * _SIZE_UNITS[unit]


def parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in {"1", "true", "yes", "on"}:
        return True
    if low in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"not a boolean: {text!r} (use true or false)")


def check_listen(value: str) -> None:
    """`unix:/abs/path` or `HOST:PORT` (port 0 = any free port)."""
    if value.startswith("unix:"):
        path = value[len("unix:") :]
        if not path.startswith("/"):
            raise ValueError(f"unix socket path must be absolute, got {value!r}")
        if len(path.encode()) > 107:
            raise ValueError("unix socket path is longer than the 107 bytes Linux allows")
        return
    check_host_port(value)


def check_host_port(value: str) -> None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError(f"expected HOST:PORT or unix:/path, got {value!r}")


def check_optional_host_port(value: str) -> None:
    if value not in {"", "off"}:
        check_host_port(value)


def _setting(
    default: Any,
    help: str,
    parse: Callable[[str], Any] = str,
    check: Callable[[Any], None] | None = None,
    secret: bool = False,
) -> Any:
    return field(
        default=default,
        repr=not secret,
        metadata={"help": help, "parse": parse, "check": check, "secret": secret},
    )


def _namespace(v: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", v):
        raise ValueError(f"must be 1-64 of A-Z a-z 0-9 _ . - (got {v!r})")


def _one_of(*choices: str) -> Callable[[str], None]:
    def check(v: str) -> None:
        if v not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}; got {v!r}")

    return check


def check_redis_url(value: str) -> None:
    """Empty, or a redis://, rediss://, unix:// or redis+cluster:// URL that the driver
    parses (port, db and options included)."""
    if not value:
        return
    scheme = urlsplit(value).scheme
    if scheme not in REDIS_SCHEMES:
        known = ", ".join(f"{s}://" for s in REDIS_SCHEMES)
        raise ValueError(f"unsupported scheme {scheme!r}: use one of {known}")
    from redis.connection import parse_url  # noqa: PLC0415

    from sidecar.tiers.redis_conn import is_cluster_url, parse_cluster_url  # noqa: PLC0415

    try:
        parse_cluster_url(value) if is_cluster_url(value) else parse_url(value)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise ValueError(f"not a valid Redis URL: {quotes_masked(str(exc))}") from None


_SERVER_HOST = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


def check_servers(value: str) -> None:
    """Empty, or a comma-separated HOST:PORT list ([v6]:PORT allowed). An item that is not
    one is named by its position, not echoed: it may hold a password (``user:pw@host``)."""
    items = [part.strip() for part in value.split(",")]
    for i, item in enumerate(filter(None, items), 1):
        host, sep, port = item.rpartition(":")
        if (
            not sep
            or not _SERVER_HOST.fullmatch(host)
            or not port.isascii()
            or not port.isdigit()
            or not 0 < int(port) <= 65535
        ):
            hint = " (Memcached servers take no user or password)" if "@" in item else ""
            raise ValueError(f"server {i} of the list is not HOST:PORT{hint}")


def quotes_masked(message: str) -> str:
    """A driver's parse error with every quoted piece masked: libpq and URL parsers quote
    the part of the string they stumbled on, which may be a piece of a password."""
    return re.sub(r"\"[^\"]*\"|'[^']*'", '"***"', message)


def check_postgres_dsn(value: str) -> None:
    """Empty, or a libpq connection string or postgresql:// URL."""
    if not value:
        return
    from psycopg import ProgrammingError  # noqa: PLC0415
    from psycopg.conninfo import conninfo_to_dict  # noqa: PLC0415

    try:
        conninfo_to_dict(value)
    except ProgrammingError as exc:
        reason = quotes_masked(str(exc))
        raise ValueError(f"not a valid PostgreSQL connection string: {reason}") from None


def _not_yet(tier: str) -> Callable[[str], None]:
    def check(v: str) -> None:
        if v:
            raise ValueError(
                f"the {tier} tier is not available in this version of the sidecar; "
                "unset it (the sidecar runs on its in-process memory tier)"
            )

    return check


@dataclass(frozen=True, slots=True)
class SidecarConfig:
    """Every sidecar setting with its default. Names are the TOML keys; the environment
    variable is STRATA_<NAME upper-cased> and the flag --<name with dashes>."""

    listen: str = _setting(
        DEFAULT_LISTEN,
        "gRPC listen address: unix:/abs/path (node-local, the default) or HOST:PORT; a "
        "missing socket folder is created 0750, one other users can write to is refused",
        check=check_listen,
    )
    socket_takeover: bool = _setting(
        True,
        "start even while another sidecar of the same uid answers on the unix socket, taking "
        "the path over (it drains and exits); false: refuse to start while any process "
        "answers there. A live socket of another uid is never taken over",
        parse=parse_bool,
    )
    metrics_listen: str = _setting(
        "127.0.0.1:9464",
        "HOST:PORT serving Prometheus /metrics; empty or 'off' disables it",
        check=check_optional_host_port,
    )
    memory_max_bytes: int = _setting(
        256 * 1024**2,
        "byte budget of the in-process memory tier (accepts 256MiB, 1g, ...)",
        parse=parse_size,
        check=Range(MIB, 16 * TIB, "bytes", zero="stores nothing"),
    )
    admission: str = _setting(
        "tinylfu",
        "memory tier admission policy: tinylfu (keeps one-hit wonders out) or always",
        check=_one_of("tinylfu", "always"),
    )
    max_key_bytes: int = _setting(
        2048,
        "longest cache key accepted, in bytes",
        parse=parse_size,
        check=Range(64, 64 * KIB, "bytes"),
    )
    max_body_bytes: int = _setting(
        8 * 1024**2,
        "largest response body accepted by Store, in bytes",
        parse=parse_size,
        check=Range(KIB, MAX_BODY_BYTES, "bytes"),
    )
    max_headers: int = _setting(
        256, "most header lines in one entry", parse=count, check=Range(16, 4096)
    )
    max_header_bytes: int = _setting(
        64 * 1024,
        "largest total size of an entry's header names and values",
        parse=parse_size,
        check=Range(KIB, MAX_HEADER_BYTES, "bytes"),
    )
    max_ttl_seconds: int = _setting(
        365 * 24 * 3600,
        "longest an entry lives after it was stored: a longer TTL, stale window (beyond what "
        "the TTL leaves) or storage TTL is clamped to it, counted and logged",
        parse=whole_seconds,
        check=Range(1, 3650 * DAY, "s"),
    )
    coalesce_max_wait_ms: int = _setting(
        5000,
        "cap on how long a coalesced lookup may wait for another caller's fill",
        parse=milliseconds,
        check=Range(1, MINUTE_MS, "ms", zero="no waiting"),
    )
    lease_ttl_ms: int = _setting(
        10000,
        "how long a fill lease lasts when its holder never stores or releases",
        parse=milliseconds,
        check=Range(10, 10 * MINUTE_MS, "ms"),
    )
    generations_cache_ms: int = _setting(
        1000,
        "how long a sidecar reuses tag generation counters read from Redis (other sidecars "
        "see a tag purge within this)",
        parse=milliseconds,
        check=Range(1, MINUTE_MS, "ms", zero="read every time"),
    )
    generations_max_records: int = _setting(
        100_000,
        "tag purge records kept in this process (400-650 bytes of RSS each, outside the memory "
        "tier's budget); beyond it, without Redis "
        "every entry is treated as purged once (an epoch bump), with Redis those expiring "
        "first are forgotten here (re-read from Redis)",
        parse=count,
        check=Range(1000, 10_000_000),
    )
    sweep_interval_seconds: float = _setting(
        5.0, "how often expired entries are swept out", parse=seconds, check=Range(0.1, 3600, "s")
    )
    shutdown_grace_seconds: float = _setting(
        10.0,
        "when stopping (SIGTERM, or another sidecar took the socket over), the most time "
        "calls in flight may take before they are cancelled; an idle sidecar stops at once",
        parse=seconds,
        check=Range(0.001, 600, "s", zero="cancel at once"),
    )
    log_level: str = _setting(
        "INFO",
        "log level: DEBUG, INFO, WARNING, ERROR",
        parse=str.upper,
        check=_one_of("DEBUG", "INFO", "WARNING", "ERROR"),
    )
    log_format: str = _setting(
        "ecs", "log format: ecs (JSON for the ELK stack) or text", check=_one_of("ecs", "text")
    )
    redis_url: str = _setting(
        "",
        "Redis URL for the shared tier (redis://, rediss://, unix://, redis[s]+cluster://h:p,h:p); "
        "empty = not used",
        check=check_redis_url,
        secret=True,
    )
    memcached_servers: str = _setting(
        "",
        "comma-separated HOST:PORT list for the Memcached tier; empty = not used",
        check=check_servers,
    )
    postgres_dsn: str = _setting(
        "",
        "PostgreSQL DSN for the durable fallback tier; empty = not used",
        check=check_postgres_dsn,
        secret=True,
    )
    redis_timeout_ms: int = _setting(
        50,
        "deadline of one Redis operation; a slower Redis is skipped",
        parse=milliseconds,
        check=Range(1, MINUTE_MS, "ms"),
    )
    memcached_timeout_ms: int = _setting(
        50,
        "deadline of one Memcached operation",
        parse=milliseconds,
        check=Range(1, MINUTE_MS, "ms"),
    )
    postgres_timeout_ms: int = _setting(
        200,
        "deadline of one PostgreSQL statement",
        parse=milliseconds,
        check=Range(1, MINUTE_MS, "ms"),
    )
    lookup_budget_ms: int = _setting(
        40,
        "time one lookup may spend reading the shared tiers: each tier call gets the smaller of "
        "its own timeout and what is left, a tier that misses it counts as failing; keep it "
        "below the plugin's sidecar.timeout_ms (0 = each tier's own timeout only)",
        parse=milliseconds,
        check=Range(1, MINUTE_MS, "ms", zero="tier timeouts only"),
    )
    max_batch_calls: int = _setting(
        128,
        "most calls in one Exchange message; a larger batch runs none of them and gets one "
        "RESOURCE_EXHAUSTED error reply (the plugin sends at most 64)",
        parse=count,
        check=Range(64, 100_000),
    )
    max_streams: int = _setting(
        256,
        "most Exchange streams open at once (the plugin opens one per busy thread); a new "
        "one above it ends the longest-idle stream (status OK: its client reopens), or gets "
        "RESOURCE_EXHAUSTED when none is idle",
        parse=count,
        check=Range(1, 100_000),
    )
    max_unary_in_flight: int = _setting(
        1024,
        "most unary calls (Lookup, Store, ...) being handled at once; one more gets "
        "RESOURCE_EXHAUSTED",
        parse=count,
        check=Range(1, 1_000_000),
    )
    max_coalesce_waiters: int = _setting(
        1024,
        "most lookups waiting for another caller's fill at once; above it a lookup does not "
        "wait (nor take the fill lease)",
        parse=count,
        check=Range(1, 1_000_000),
    )
    max_pending_reply_bytes: int = _setting(
        8 * MIB,
        "bytes of replies written but not yet read by their clients, all Exchange streams "
        "and unary Lookups together (they hold 2-3 times this in RAM); a reply that would go "
        "above it gets RESOURCE_EXHAUSTED instead (a reply message of at most 64KiB, or one "
        "alone, always goes)",
        parse=parse_size,
        check=Range(MIB, 64 * GIB, "bytes"),
    )
    max_request_bytes_in_flight: int = _setting(
        64 * MIB,
        "bytes of requests over 64KiB being parsed and handled at once, all calls together; "
        "one more is refused unparsed with RESOURCE_EXHAUSTED (one alone always goes)",
        parse=parse_size,
        check=Range(MIB, 64 * GIB, "bytes"),
    )
    tier_failure_threshold: int = _setting(
        5,
        "consecutive failures after which a shared tier is skipped without being asked",
        parse=count,
        check=Range(1, 1000),
    )
    tier_open_seconds: float = _setting(
        2.0,
        "how long a failing shared tier is skipped before one call probes it again",
        parse=seconds,
        check=Range(0.1, 600, "s"),
    )
    shared_min_hits: int = _setting(
        2,
        "lookups of a key on this node (0-15) before its entries go to shared RAM "
        "(Redis/Memcached); colder entries go to memory and PostgreSQL only",
        parse=count,
        check=Range(0, 15),
    )
    redis_max_entry_bytes: int = _setting(
        65536,
        "largest hot entry (raw body + headers) placed in Redis when Memcached is configured; "
        "larger ones go to Memcached",
        parse=parse_size,
        check=Range(0, 512 * MIB, "bytes"),
    )
    memcached_max_entry_bytes: int = _setting(
        1048576 - 1024,
        "largest entry (raw body + headers) placed in shared RAM (Memcached, or Redis alone); "
        "larger ones go to memory and PostgreSQL only",
        parse=parse_size,
        check=Range(0, GIB, "bytes"),
    )
    redis_max_bytes: int = _setting(
        0,
        "Strata's byte budget of Redis: while INFO used_memory (the whole server's) is at or "
        "above it, no new entries go to Redis; 0 = none (Redis's own maxmemory applies)",
        parse=parse_size,
        check=Range(1, 16 * TIB, "bytes", zero="no budget"),
    )
    memcached_max_bytes: int = _setting(
        0,
        "Strata's byte budget of Memcached: while stats bytes summed over the servers is at or "
        "above it, no new entries go to Memcached; 0 = none (memcached -m applies)",
        parse=parse_size,
        check=Range(1, 16 * TIB, "bytes", zero="no budget"),
    )
    postgres_max_bytes: int = _setting(
        0,
        "Strata's byte budget of PostgreSQL: while pg_total_relation_size('strata_entries') "
        "is at or above it, no new entries go to PostgreSQL; 0 = none (the disk is the limit)",
        parse=parse_size,
        check=Range(1, 1024 * TIB, "bytes", zero="no budget"),
    )
    budget_sample_seconds: float = _setting(
        5.0,
        "how often the usage of the shared tiers with a byte budget is sampled",
        parse=seconds,
        check=Range(0.1, 3600, "s"),
    )
    durable_tier: bool = _setting(
        True,
        "write every entry to PostgreSQL, the durable long tail (when configured); "
        "false: nothing new is written there",
        parse=parse_bool,
    )
    namespace: str = _setting(
        "strata",
        "prefix of every key in the shared tiers (separates clusters sharing a server)",
        check=_namespace,
    )
    kafka_bootstrap: str = _setting(
        "",
        "Kafka bootstrap servers for invalidation events; empty = not used",
        check=_not_yet("kafka"),
    )

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict, secrets (passwords in URLs/DSNs) masked."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata["secret"] and isinstance(value, str):
                value = redact(value)
            out[f.name] = value
        return out


SETTINGS: tuple[dataclasses.Field[Any], ...] = dataclasses.fields(SidecarConfig)
SETTING_NAMES = frozenset(f.name for f in SETTINGS)


def env_name(setting: str) -> str:
    return ENV_PREFIX + setting.upper()


def _convert(f: dataclasses.Field[Any], raw: Any, source: str) -> Any:
    """Turn a raw value (str from env/flags, typed from TOML) into the setting's type."""
    check = f.metadata["check"]
    try:
        value = _typed(f, raw)
    except (ValueError, OverflowError) as exc:  # a range is worth knowing here too
        hint = f"; {check.describe()}" if isinstance(check, Range) else ""
        raise _config_error(f, source, f"{exc}{hint}", raw) from None
    try:
        if check is not None:
            check(value)
    except ValueError as exc:
        raise _config_error(f, source, str(exc), raw) from None
    return value


def _typed(f: dataclasses.Field[Any], raw: Any) -> Any:
    if isinstance(raw, str):
        return f.metadata["parse"](raw)
    if isinstance(f.default, bool):
        if not isinstance(raw, bool):
            raise ValueError(f"expected true or false, got {raw!r}")
        return raw
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        kind = {int: "whole number", float: "number", str: "string"}.get(type(f.default))
        raise ValueError(f"expected a {kind or type(f.default).__name__}, got {raw!r}")
    if isinstance(f.default, str):
        raise ValueError(f"expected a string, got {raw!r}")
    if isinstance(f.default, int) and isinstance(raw, float):
        raise ValueError(f"expected a whole number, got {raw!r}")
    return float(raw) if isinstance(f.default, float) else raw


def _config_error(f: dataclasses.Field[Any], source: str, message: str, raw: Any) -> ConfigError:
    """One line naming the setting and its source; a secret setting's value never in it."""
    if f.metadata["secret"] and isinstance(raw, str):
        message = Scrubber.of_settings([raw]).scrub(message)
    return ConfigError(f"{f.name} (from {source})", message)


def _unknown(name: str, source: str) -> ConfigError:
    close = difflib.get_close_matches(name, sorted(SETTING_NAMES), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(name, f"unknown setting in {source}{hint}")


def read_file(path: Path) -> dict[str, Any]:
    """Parse a TOML settings file; unknown keys are errors."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError("config", f"settings file not found: {path}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("config", f"{path} is not valid TOML: {exc}") from exc
    for key in data:
        if key not in SETTING_NAMES:
            raise _unknown(key, str(path))
    return data


def read_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The STRATA_* settings in `environ`; an unknown STRATA_ name is an error."""
    out: dict[str, str] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_FILE_ENV:
            continue
        if name.startswith(FOREIGN_ENV_PREFIXES):
            continue
        setting = name[len(ENV_PREFIX) :].lower()
        if setting not in SETTING_NAMES:
            raise _unknown(setting, f"environment variable {name}")
        out[setting] = value
    return out


def load_config(
    environ: Mapping[str, str],
    overrides: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> SidecarConfig:
    """Build the one SidecarConfig from file, environment and flag overrides.

    `overrides` are raw strings from the command line, keyed by setting name. The file is
    `config_file`, else the path in STRATA_CONFIG, else none.
    """
    by_name = {f.name: f for f in SETTINGS}
    values: dict[str, Any] = {}
    file_path = config_file or (
        Path(environ[CONFIG_FILE_ENV]) if environ.get(CONFIG_FILE_ENV) else None
    )
    if file_path is not None:
        for key, raw in read_file(file_path).items():
            values[key] = _convert(by_name[key], raw, str(file_path))
    for key, raw in read_env(environ).items():
        values[key] = _convert(by_name[key], raw, env_name(key))
    for key, raw in (overrides or {}).items():
        if key not in by_name:
            raise _unknown(key, "command line")
        values[key] = _convert(by_name[key], raw, "--" + key.replace("_", "-"))
    return SidecarConfig(**values)

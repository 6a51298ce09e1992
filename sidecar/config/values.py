"""How each setting's text is read and checked: sizes, booleans, addresses, and the values
a tier reads itself (Redis URL, Memcached servers, PostgreSQL DSN), which are checked by
that tier's own parser, so a value accepted here is one the tier accepts at start-up
(imported when such a value is set: a sidecar without Redis never loads its driver).

A check raises ValueError with a phrase that `sidecar.config.loading` prefixes with the
setting's name and source. What is NOT checked here: that a server answers (tiers connect
after start-up and retry), or that a host name resolves.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import field
from typing import Any

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE | re.ASCII)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def setting(
    default: Any,
    help: str,
    parse: Callable[[str], Any] = str,
    check: Callable[[Any], None] | None = None,
    secret: bool = False,
) -> Any:
    """One field of `SidecarConfig`: its default, help text, parser of text values (from
    the environment and flags), check of the parsed value, and whether it is a secret."""
    return field(
        default=default,
        repr=not secret,
        metadata={"help": help, "parse": parse, "check": check, "secret": secret},
    )


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


def check_namespace(value: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
        raise ValueError(f"must be 1-64 of A-Z a-z 0-9 _ . - (got {value!r})")


def one_of(*choices: str) -> Callable[[str], None]:
    def check(value: str) -> None:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}; got {value!r}")

    return check


def check_redis_url(value: str) -> None:
    """Empty, or a URL the Redis helpers can use (`sidecar.tiers.redis_conn.check_url`:
    redis://, rediss://, unix:// or redis[s]+cluster://, port, db and options included)."""
    if value:
        from sidecar.tiers.redis_conn import check_url  # noqa: PLC0415

        check_url(value)


def check_servers(value: str) -> None:
    """Empty, or a server list the Memcached tier accepts (`parse_servers`). A bad item is
    named by its position, never echoed: it may hold a password (``user:pw@host``)."""
    if not value:
        return
    from sidecar.tiers.memcached import ServerListError, parse_servers  # noqa: PLC0415

    try:
        parse_servers(value)
    except ServerListError as exc:
        raise ValueError(f"server {exc.position} of the list {exc.reason}") from None


def check_postgres_dsn(value: str) -> None:
    """Empty, or a libpq connection string or postgresql:// URL the PostgreSQL tier
    accepts (`sidecar.tiers.pg_connections.connection_string`)."""
    if value:
        from sidecar.tiers.pg_connections import connection_string  # noqa: PLC0415

        connection_string(value)

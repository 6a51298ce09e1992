"""One way to connect to Redis for everything in the sidecar that uses it (the Redis tier,
fill leases, tag generations): the same URL forms, every wait bounded, no retries.

URL forms: ``redis://``, ``rediss://`` (TLS), ``unix://``, and for Redis Cluster
``redis+cluster://[user:pw@]h:p[,h:p...]`` or ``rediss+cluster://...``. What this does not
guarantee: a single deadline over a whole operation (pool wait, connect and each read are
bounded by `timeout_s` separately), or that a cluster client learns of slot moves before
its first failed call.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.exceptions import RedisClusterException, RedisError

from sidecar.core.redact import quotes_masked

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SCHEMES = ("redis", "rediss", "unix", *CLUSTER_SCHEMES)
#: What a driver call can raise; callers wrap these into `TierError`.
DRIVER_ERRORS = (RedisError, RedisClusterException, OSError)


def is_cluster_url(url: str) -> bool:
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def parse_cluster_url(url: str) -> tuple[list[ClusterNode], dict[str, Any]]:
    """``redis+cluster://[user:pw@]h:p[,h:p...]`` -> startup nodes and client options."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in CLUSTER_SCHEMES:
        raise ValueError("a cluster URL starts with redis+cluster:// or rediss+cluster://")
    netloc = urlsplit("//" + rest).netloc
    userinfo, _, hosts = netloc.rpartition("@")
    options: dict[str, Any] = {"ssl": scheme == "rediss+cluster"}
    if userinfo:
        user, has_pw, password = userinfo.partition(":")
        options["username"] = unquote(user) or None
        options["password"] = unquote(password) if has_pw else None
    nodes = []
    for item in filter(None, hosts.split(",")):
        host, colon, port = item.rpartition(":")
        if not colon or not host or not port.isdigit():
            raise ValueError(f"cluster node {item!r} is not HOST:PORT")
        nodes.append(ClusterNode(host.strip("[]"), int(port)))
    if not nodes:
        raise ValueError("a cluster URL names at least one HOST:PORT")
    return nodes, options


def check_url(url: str) -> None:
    """ValueError unless `connect` can use `url`: a known scheme, then host, port, db and
    options as the driver (or `parse_cluster_url`) reads them. The one parser of the
    ``redis_url`` setting (the configuration calls it too); the message masks every quoted
    piece of the driver's reason (it may be a piece of a password)."""
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise ValueError(f"unsupported scheme {scheme!r}: use one of {known}")
    try:
        if is_cluster_url(url):
            parse_cluster_url(url)
        else:
            parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise ValueError(f"not a valid Redis URL: {quotes_masked(str(exc))}") from None


def connect(url: str, timeout_s: float, max_connections: int) -> Redis | RedisCluster:
    """A client for `url` (no I/O yet): timeouts of `timeout_s`, no retries, a blocking
    pool of `max_connections` (waiting for a free connection is bounded too). ValueError
    (from `check_url`) if `url` cannot be used."""
    check_url(url)
    common: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(NoBackoff(), 0),
    }
    if is_cluster_url(url):
        nodes, options = parse_cluster_url(url)
        return RedisCluster(
            startup_nodes=nodes, max_connections=max_connections, **common, **options
        )
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=timeout_s, **common
    )
    return Redis.from_pool(pool)

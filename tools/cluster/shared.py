"""The shared servers a cluster's sidecars use, as `make services-up` left them, and the
sidecar settings that point one run of the cluster at them.

`shared_settings` reads ``.run/services/services.env`` (`tools.services.load_env`) and
checks that Redis, Memcached, PostgreSQL and the Kafka broker answer now
(`tools.services.healthy`); `ServicesDownError` says which do not and how to start them.
`run_settings` adds what keeps one run apart from every other: a namespace (the prefix of
every key in Redis, Memcached and PostgreSQL) and an invalidation topic of its own, so
entries and events of earlier runs (the services keep their data) are never seen.

Not guaranteed: that a server healthy at this check is still up a moment later; that the
data a run leaves behind is removed (entries expire with their TTL; topics stay until the
broker restarts).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping

from tools import services

#: services.env name -> sidecar setting (README "Configuration reference — sidecar").
SERVICE_SETTINGS = {
    "STRATA_TEST_REDIS_URL": "redis_url",
    "STRATA_TEST_MEMCACHED_SERVERS": "memcached_servers",
    "STRATA_TEST_POSTGRES_DSN": "postgres_dsn",
    "STRATA_TEST_KAFKA_BOOTSTRAP": "kafka_bootstrap",
}
#: The tools.services server behind each of them.
SERVERS = {
    "STRATA_TEST_REDIS_URL": "redis",
    "STRATA_TEST_MEMCACHED_SERVERS": "memcached",
    "STRATA_TEST_POSTGRES_DSN": "postgres",
    "STRATA_TEST_KAFKA_BOOTSTRAP": "tansu",
}


class ServicesDownError(RuntimeError):
    """Some shared server is not recorded, not ours any more, or does not answer."""

    def __init__(self, missing: list[str], run_dir: str) -> None:
        super().__init__(
            f"the shared services are not up ({', '.join(missing)} not answering; "
            f"run dir {run_dir}): start them with `make services-up`"
        )
        self.missing = missing


def shared_settings(run_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Sidecar settings for the shared Redis, Memcached, PostgreSQL and broker of
    `run_dir` (default: the services' own, see `tools.services.resolve_run_dir`);
    `ServicesDownError` unless all four answer."""
    env = services.load_env(run_dir)
    missing = [
        server
        for key, server in SERVERS.items()
        if key not in env or not services.healthy(run_dir, server)
    ]
    if missing:
        raise ServicesDownError(missing, str(services.resolve_run_dir(run_dir)))
    return {SERVICE_SETTINGS[key]: env[key] for key in SERVICE_SETTINGS}


def run_id() -> str:
    """A short id naming one run's namespace and topic (random, 8 hex digits)."""
    return secrets.token_hex(4)


def run_settings(shared: Mapping[str, str], run: str) -> dict[str, str]:
    """`shared` plus this run's own namespace and invalidation topic (named after `run`)."""
    return {
        **shared,
        "namespace": f"strata-cluster-{run}",
        "kafka_topic": f"strata.invalidations.cluster-{run}",
    }

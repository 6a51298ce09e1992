"""Start, check and stop the real servers that Strata's integration tests need.

Usage::

    python -m tools.services up     [--run-dir DIR] [--only NAME,...] [--prometheus-targets H:P,...]
    python -m tools.services down   [--run-dir DIR] [--only NAME,...]
    python -m tools.services status [--run-dir DIR] [--only NAME,...]

Servers (NAME), one recipe module each: ``redis``, ``memcached``, ``postgres`` (a fresh
PostgreSQL cluster with a ``strata`` database), ``prometheus`` (scraping the targets listed in a
file_sd targets file) and ``tansu`` (a Kafka-protocol broker). Each recipe module exposes
``SERVER``, a `Server`: how to start it on a port, check it, and describe it in the env file.
`tools.services.supervisor` starts, waits for, restarts and stops them alike;
`tools.services.state` keeps the run dir's files; `tools.services.procs` reads ``/proc``.

Each server listens on 127.0.0.1 only, on a port picked free at start (never a well-known
default). ``up`` waits until each one really answers its protocol, then writes
``<run-dir>/services.env`` (``STRATA_TEST_*=...`` lines, read by tests through `load_env`) and
prints that file's path on stdout; progress goes to stderr. The run dir is ``--run-dir``, else
``$STRATA_RUN_DIR``, else ``<repo root>/.run/services``. Per server it holds ``<name>.log``,
``<name>.pid`` and the server's data; ``state.json`` records pid, port and process start time.

What this package does NOT guarantee:

* Durability or isolation. Everything is for tests: PostgreSQL runs with fsync off and trust
  auth, Tansu keeps topics in memory, nothing has a password, and any local user can connect.
  A server that is restarted comes back empty. A server that is kept still holds whatever
  earlier test runs left there (keys, tables, topics), so tests must use unique names.
* Readiness beyond the health check (see the Prometheus and Tansu recipes: tests must poll).
* A port that stays free. The port is picked by binding port 0 and closing the socket, so another
  process can take it before the server binds; a server that exits early is retried on a new
  port (3 attempts). Ownership of the listening socket is checked through ``/proc/net/tcp``.
* Portability. It needs Linux (``/proc``). As root, PostgreSQL runs as the ``postgres`` OS user
  and memcached as ``nobody``.
* Safety against concurrent use of one run dir by other tools. ``up`` and ``down`` take a lock
  file in the run dir, so two of them serialise; ``status`` takes no lock.
* Cleanliness after a crash of the machine or a lost ``state.json``: servers that are no longer
  recorded are not found again (except a PostgreSQL still running in ``<run-dir>/pg``).
"""

from __future__ import annotations

from tools.services.base import REPO_ROOT, Options, Record, Server, ServiceError
from tools.services.postgres import pg_bin, pg_run
from tools.services.prometheus import set_prometheus_targets, write_prometheus_targets_file
from tools.services.state import (
    DEFAULT_RUN_DIR,
    ENV_FILE,
    RUN_DIR_ENV,
    load_env,
    log_tail,
    resolve_run_dir,
)
from tools.services.supervisor import (
    SERVER_NAMES,
    SERVERS,
    down,
    healthy,
    restart,
    running,
    status,
    up,
)
from tools.services.tansu import tansu_binary

__all__ = [
    "DEFAULT_RUN_DIR",
    "ENV_FILE",
    "REPO_ROOT",
    "RUN_DIR_ENV",
    "SERVERS",
    "SERVER_NAMES",
    "Options",
    "Record",
    "Server",
    "ServiceError",
    "down",
    "healthy",
    "load_env",
    "log_tail",
    "pg_bin",
    "pg_run",
    "resolve_run_dir",
    "restart",
    "running",
    "set_prometheus_targets",
    "status",
    "tansu_binary",
    "up",
    "write_prometheus_targets_file",
]

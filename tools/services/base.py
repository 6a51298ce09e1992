"""What every part of the supervisor shares: constants, errors, and the shape of a recipe.

A recipe (`Server`) says how to start one kind of server on a given port, how to check that it
answers its protocol, and which ``services.env`` lines describe it. It does not wait for the
server nor retry it: `tools.services.supervisor` does that for every recipe alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
HEALTH_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
START_ATTEMPTS = 3


class ServiceError(Exception):
    """A server could not be started, checked or stopped. The first line names the server."""


class ExitedEarlyError(ServiceError):
    """The server process exited before it became healthy (e.g. its port was taken)."""


@dataclasses.dataclass(frozen=True)
class Record:
    """What ``state.json`` keeps about one running server."""

    pid: int
    port: int
    start_ticks: int  # field 22 of /proc/<pid>/stat: tells a reused pid apart
    pg_root: str = ""  # PostgreSQL only: the directory holding data/ and sock/


@dataclasses.dataclass(frozen=True)
class Options:
    timeout: float = HEALTH_TIMEOUT_S
    prometheus_targets: list[str] | None = None  # None: leave the targets file as it is


@dataclasses.dataclass(frozen=True)
class Server:
    """How to start, check and describe one kind of server, and what it leaves behind."""

    name: str
    program: str  # first word of /proc/<pid>/cmdline, to recognise the process as ours
    start: Callable[[Path, int, Options], Record]  # launch on a port; health is awaited later
    check: Callable[[Record], None]  # raises unless the server answers its protocol
    env: Callable[[Record, Path], dict[str, str]]  # its lines of services.env
    data_dirs: tuple[str, ...] = ()  # under the run dir; deleted when the server is cleaned
    stop: Callable[[Record], None] | None = None  # default: SIGTERM/SIGKILL by recorded pid
    clean: Callable[[Path, Record | None], None] | None = None  # default: data_dirs + pid file

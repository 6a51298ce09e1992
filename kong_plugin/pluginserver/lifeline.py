"""A worker's tie to its supervisor, made before anything slow happens in the worker.

A worker is started with ``--supervisor PID``. As its very first step it asks Linux to
send it SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``), then checks that its
parent still is that supervisor: if the supervisor died while the worker was starting,
the signal will never come, so the worker exits at once instead of serving alone (and
holding Kong's log pipe open, which would stop Kong from starting the plugin server
again). `run_worker`'s one-second parent poll covers systems without ``prctl``.

Not guaranteed: anything on a system without ``prctl`` beyond that poll.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

FLAG = "--supervisor"


def supervisor_of(argv: Sequence[str]) -> int | None:
    """The pid after ``--supervisor`` in `argv` (None: not a worker, or malformed)."""
    for i, arg in enumerate(argv):
        value = None
        if arg == FLAG and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(FLAG + "="):
            value = arg.split("=", 1)[1]
        if value is not None:
            return int(value) if value.isdigit() else None
    return None


def die_with_parent() -> None:
    """Ask Linux for SIGTERM when this process's parent dies (even by SIGKILL)."""
    try:
        import ctypes  # noqa: PLC0415

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def hold(argv: Sequence[str]) -> None:
    """For a worker (`argv` names its supervisor): tie its life to the supervisor's, and
    exit now if the supervisor is already gone."""
    supervisor = supervisor_of(argv)
    if supervisor is None:
        return
    die_with_parent()
    if os.getppid() != supervisor:
        sys.exit(0)

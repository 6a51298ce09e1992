"""Waiting for the HTTP processes a benchmark runs, the environment it gives them, and
reading their memory and CPU time: shared by every scenario (sidecars are started with
`tools.stack.SidecarProcess`).

Imports none of the product's packages, so a scenario can drive another checkout's code.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request


def clean_env() -> dict[str, str]:
    """This process's environment without ``STRATA_*`` and ``GRPC_*`` variables: a child
    sidecar or client then runs on its defaults and the settings it is given."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("STRATA_", "GRPC_"))}


def wait_http(
    url: str, what: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 60
) -> None:
    """Wait until `url` answers (any HTTP status counts); RuntimeError naming `what` if
    `proc` exits first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError as exc:  # refused, or an HTTP error status (which means it answers)
            if hasattr(exc, "code"):
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer within {timeout:.0f} s")


def rss_bytes(pid: int) -> int:
    """The resident set of process `pid` (``VmRSS`` of ``/proc/PID/status``) in bytes."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _stat_fields(pid: int) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name (field 3, the state, first)."""
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
        return f.read().rsplit(")", 1)[1].split()


def parse_cpu_ticks(stat_fields: list[str], *, reaped_children: bool) -> int:
    """utime + stime (+ cutime + cstime: the children it has waited for) from the fields
    :func:`_stat_fields` returns, in clock ticks."""
    own = int(stat_fields[11]) + int(stat_fields[12])
    return own + (int(stat_fields[13]) + int(stat_fields[14]) if reaped_children else 0)


def children_of(stat_by_pid: dict[int, list[str]], pid: int) -> list[int]:
    """Every descendant of ``pid`` (children, grandchildren...) in a ``pid -> stat fields``
    table of the running processes."""
    kids: dict[int, list[int]] = {}
    for child, fields in stat_by_pid.items():
        kids.setdefault(int(fields[1]), []).append(child)
    out: list[int] = []
    todo = list(kids.get(pid, ()))
    while todo:
        child = todo.pop()
        out.append(child)
        todo.extend(kids.get(child, ()))
    return out


def _all_stats() -> dict[int, list[str]]:
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stats[int(entry)] = _stat_fields(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                continue
    return stats


def cpu_seconds(pid: int, *, tree: bool) -> float:
    """CPU time (user + system) process ``pid`` used so far, in seconds.

    ``tree=True`` adds every live descendant and the children each of them has reaped (a
    server that forks workers); ``tree=False`` is the process alone. Not guaranteed: a
    descendant that exits and is reaped between two readings brings its whole lifetime into
    its parent's count (``cutime``), and one that exits unreaped between readings is lost."""
    if not tree:
        return parse_cpu_ticks(_stat_fields(pid), reaped_children=False) / _TICKS
    stats = _all_stats()
    if pid not in stats:
        raise ProcessLookupError(pid)
    total = sum(
        parse_cpu_ticks(stats[p], reaped_children=True) for p in [pid, *children_of(stats, pid)]
    )
    return total / _TICKS


_TICKS = os.sysconf("SC_CLK_TCK")

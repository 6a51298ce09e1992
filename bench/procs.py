"""Waiting for the HTTP processes a benchmark runs, the environment it gives them, and
reading their memory: shared by every scenario (sidecars are started with
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

"""Run a command as a process group of its own, bounded in time: what the smoke tests of
`python -m bench ...` and `python -m tools.cost_example` need (a run that hangs is stopped
with everything it started, and the test fails with the run's output).

Not guaranteed: that the group's children all leave on SIGTERM (SIGKILL follows after 20 s).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

__all__ = ["REPO", "run_group"]

REPO = Path(__file__).resolve().parents[2]


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGTERM the group (the command and what it started), then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            return proc.communicate(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
    return "", ""


def run_group(cmd: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """`cmd` from the repo root in a session of its own; the test fails (with the run's
    output) when it takes longer than `timeout_s`."""
    proc = subprocess.Popen(
        list(cmd),
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        out, err = _stop(proc)
        pytest.fail(
            f"{' '.join(cmd[1:])} ran over {timeout_s:.0f} s:\n{out[-3000:]}\n{err[-3000:]}"
        )
    return subprocess.CompletedProcess(list(cmd), proc.returncode, out, err)

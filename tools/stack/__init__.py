"""One way to start a sidecar process and wait until it serves (`SidecarProcess`,
`tools.stack.sidecar`), and the example stack built around one (`Stack`,
`tools.stack.example`): used by `make run`, the tests and the benchmarks.
"""

from __future__ import annotations

from tools.services.procs import free_port
from tools.stack.example import REPO, Stack, kong_config
from tools.stack.nodes import Node, SidecarNodes
from tools.stack.sidecar import (
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    Output,
    SidecarProcess,
    SidecarStartError,
    probe,
    sidecar_argv,
    socket_owner,
    unix_path,
    wait_serving,
)

__all__ = [
    "REPO",
    "START_TIMEOUT_S",
    "STOP_TIMEOUT_S",
    "Node",
    "Output",
    "SidecarNodes",
    "SidecarProcess",
    "SidecarStartError",
    "Stack",
    "free_port",
    "kong_config",
    "probe",
    "sidecar_argv",
    "socket_owner",
    "unix_path",
    "wait_serving",
]

"""The sidecar and the example stack as the end-to-end tests start them: on a unix socket,
metrics off, logging warnings only, with the test process's environment minus ``STRATA_*``
settings (see `tools.stack` for what is and is not guaranteed)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tools.stack import SidecarProcess, Stack, kong_config

#: The plugin's sidecar timeout in the tests' kong.yml: short, so a dead sidecar is noticed
#: quickly.
SIDECAR_TIMEOUT_MS = 200


def clean_env() -> dict[str, str]:
    """This process's environment without any ``STRATA_`` setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}


def unix_sidecar(
    socket_path: Path,
    env: Mapping[str, str],
    *,
    metrics_listen: str = "off",
    args: Sequence[str] = (),
    log: Path | None = None,
) -> SidecarProcess:
    """A sidecar (not started) on `socket_path`, logging warnings only; its output goes to
    `log` when given, else it is captured (`SidecarProcess.output`)."""
    return SidecarProcess(
        f"unix:{socket_path}",
        env=env,
        metrics_listen=metrics_listen,
        log_level="WARNING",
        args=args,
        log=log,
    )


def stack_config(
    upstream_url: str, sidecar_address: str, **plugin_overrides: Any
) -> dict[str, Any]:
    """The repository's kong.yml pointed at `upstream_url` and the sidecar at
    `sidecar_address`, with `plugin_overrides` in each strata-cache plugin's config."""
    sidecar = {"address": sidecar_address, "timeout_ms": SIDECAR_TIMEOUT_MS}
    return kong_config(upstream_url, sidecar, plugin_overrides)


def example_stack(tmp: Path, strict: bool = True, **plugin_overrides: Any) -> Stack:
    """Upstream + sidecar (``tmp/sidecar.sock``) + kongsim in strict mode; use as
    ``async with example_stack(tmp) as stack:``."""
    return Stack(
        tmp,
        unix_sidecar(tmp / "sidecar.sock", clean_env()),
        strict=strict,
        plugin=plugin_overrides,
        sidecar_settings={"timeout_ms": SIDECAR_TIMEOUT_MS},
    )

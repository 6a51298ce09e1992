"""`make run`: the example stack in the foreground, stopped cleanly by Ctrl-C.

Starts, on loopback, `tools.stack.Stack`: the example upstream (`deploy/upstream`), the
sidecar (in-process memory tier) on a unix socket in this run's own temporary folder (mode
0700, so neither root nor a writable /run is needed, and no other user can reach it), and
kongsim with the repository's `kong.yml` (pointed at them), which starts the real
strata-cache plugin server. Then it prints a few `curl` commands and waits. Ctrl-C (SIGINT)
or SIGTERM stops everything in reverse order.

Overrides (for tests, or when a port is taken): `STRATA_KONGSIM_LISTEN` (default
127.0.0.1:8000; kongsim listens on 127.0.0.1 at that port), `STRATA_KONGSIM_UPSTREAM_LISTEN`
(default 127.0.0.1:9000) and the sidecar's own `STRATA_*` settings (e.g. `STRATA_LISTEN`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path

from kongsim.protocol.spec import parse_env_names
from tools.services.procs import taken
from tools.stack import REPO, SidecarProcess, SidecarStartError, Stack

DEFAULT_GATEWAY = "127.0.0.1:8000"
DEFAULT_UPSTREAM = "127.0.0.1:9000"
#: The example upstream's slow endpoint, as `python -m deploy.upstream.app` serves it.
SLOW_MS = 500
#: Kong's default log level ("notice", between INFO and WARNING), as `python -m kongsim`.
NOTICE = 25


def _quick_start(gateway: str, upstream: str, sidecar: str) -> str:
    return (
        f"\nStrata is running: gateway http://{gateway} -> upstream http://{upstream},"
        f" sidecar {sidecar}.\nTry:\n"
        f"  curl -si http://{gateway}/products/1 | grep -i cache   # Miss, then Hit\n"
        f"  curl -si http://{gateway}/slow | grep -i cache         # 500 ms, then instant\n"
        f"  curl -si -H 'apikey: alice-secret-key' 'http://{gateway}/me?shared=1'\n"
        f"  curl -si -X PUT -d '{{\"price\": 1}}' http://{gateway}/products/1  # purges\n"
        "Ctrl-C stops everything.\n"
    )


async def _serve(gateway: str, upstream: str, workdir: Path) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    address = os.environ.get("STRATA_LISTEN") or f"unix:{workdir / 'sidecar.sock'}"
    # Its own session: Ctrl-C reaches this process only, which stops the sidecar in order.
    sidecar = SidecarProcess(address, cwd=REPO, inherit_output=True, new_session=True)
    stack = Stack(
        workdir,
        sidecar,
        strict=False,
        upstream=upstream,
        gateway=gateway,
        slow_ms=SLOW_MS,
        # what `python -m kongsim` passes on to plugin servers by default
        passthrough_env=parse_env_names(os.environ.get("KONG_NGINX_MAIN_ENV", "")),
    )
    try:
        await stack.start()
    except SidecarStartError as exc:
        print(f"make run: the sidecar did not start (see its log above): {exc}", file=sys.stderr)
        return 1
    try:
        print(_quick_start(gateway, upstream, address), flush=True)
        while not stop.is_set():
            if not sidecar.alive():
                print(f"make run: sidecar exited ({sidecar.returncode}); stopping", flush=True)
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
    finally:
        await stack.stop()
    return 0


def main() -> int:
    gateway = os.environ.get("STRATA_KONGSIM_LISTEN", DEFAULT_GATEWAY)
    upstream = os.environ.get("STRATA_KONGSIM_UPSTREAM_LISTEN", DEFAULT_UPSTREAM)
    busy = taken([("gateway", gateway), ("example upstream", upstream)])
    if busy is not None:
        print(
            f"make run: {busy[1]} ({busy[0]}) is already in use; stop what holds it or set "
            "STRATA_KONGSIM_LISTEN / STRATA_KONGSIM_UPSTREAM_LISTEN",
            file=sys.stderr,
        )
        return 1
    logging.basicConfig(
        level=NOTICE, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    with tempfile.TemporaryDirectory(prefix="strata-run-") as d:
        rc = asyncio.run(_serve(gateway, upstream, Path(d)))
    if rc == 0:
        print("make run: stopped", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())

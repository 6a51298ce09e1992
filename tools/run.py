"""`make run`: the example stack in the foreground, stopped cleanly by Ctrl-C.

Starts, on loopback: the example upstream (`deploy/upstream`), the sidecar (in-process
memory tier) on a unix socket in this run's own temporary folder (mode 0700, so neither
root nor a writable /run is needed, and no other user can reach it), and kongsim with the
repository's `kong.yml`, which starts the real strata-cache plugin server. Then it prints a
few `curl` commands and waits. Ctrl-C (SIGINT) or SIGTERM stops everything in reverse order.

Overrides (for tests, or when a port is taken): `STRATA_KONGSIM_LISTEN` (default
127.0.0.1:8000), `STRATA_KONGSIM_UPSTREAM_LISTEN` (default 127.0.0.1:9000) and the
sidecar's own `STRATA_*` settings (e.g. `STRATA_LISTEN`). When they differ from what
`kong.yml` says, a patched copy of `kong.yml` is used.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.procs import wait_http
from sidecar.config import DEFAULT_LISTEN

REPO = Path(__file__).resolve().parent.parent
DEFAULT_GATEWAY = "127.0.0.1:8000"
DEFAULT_UPSTREAM = "127.0.0.1:9000"
#: What kong.yml's plugins use when they do not name a sidecar (the plugin's default).
DEFAULT_SIDECAR = DEFAULT_LISTEN


def _port_free(listen: str) -> bool:
    host, _, port = listen.rpartition(":")
    with socket.socket() as s:
        try:
            s.bind((host, int(port)))
        except OSError:
            return False
    return True


def _wait_http(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    try:
        wait_http(url, what, proc)
    except RuntimeError as exc:
        raise SystemExit(f"make run: {exc}") from None


def _config(gateway_upstream: str, sidecar: str, workdir: Path) -> Path:
    """kong.yml, patched to this run's upstream and sidecar addresses if they differ."""
    path = REPO / "kong.yml"
    if gateway_upstream == DEFAULT_UPSTREAM and sidecar == DEFAULT_SIDECAR:
        return path
    config: dict[str, Any] = yaml.safe_load(path.read_text())
    for service in config.get("services", []):
        service["url"] = f"http://{gateway_upstream}"
        for route in service.get("routes", []):
            for plugin in route.get("plugins", []):
                if plugin.get("name") == "strata-cache":
                    plugin.setdefault("config", {}).setdefault("sidecar", {})["address"] = sidecar
    patched = workdir / "kong.yml"
    patched.write_text(yaml.safe_dump(config))
    return patched


def main() -> int:
    gateway = os.environ.get("STRATA_KONGSIM_LISTEN", DEFAULT_GATEWAY)
    upstream = os.environ.get("STRATA_KONGSIM_UPSTREAM_LISTEN", DEFAULT_UPSTREAM)
    sidecar_override = os.environ.get("STRATA_LISTEN")
    for name, listen in (("gateway", gateway), ("example upstream", upstream)):
        if not _port_free(listen):
            print(
                f"make run: {listen} ({name}) is already in use; stop what holds it or set "
                "STRATA_KONGSIM_LISTEN / STRATA_KONGSIM_UPSTREAM_LISTEN",
                file=sys.stderr,
            )
            return 1
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    py = sys.executable
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    with tempfile.TemporaryDirectory(prefix="strata-run-") as d:
        workdir = Path(d)
        sidecar = sidecar_override or f"unix:{workdir / 'sidecar.sock'}"
        try:

            def start(name: str, argv: list[str]) -> subprocess.Popen[bytes]:
                # Own process group: Ctrl-C reaches us, and we stop the children in order.
                proc = subprocess.Popen(argv, cwd=REPO, start_new_session=True)
                procs.append((name, proc))
                return proc

            up = start("upstream", [py, "-m", "deploy.upstream.app", "--listen", upstream])
            _wait_http(f"http://{upstream}/products", up, "the example upstream")
            sc = start("sidecar", [py, "-m", "sidecar", "--listen", sidecar])
            from sidecar.cli import probe  # noqa: PLC0415

            deadline = time.monotonic() + 30
            while not probe(sidecar, 0.5):
                if sc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("make run: the sidecar did not start (see its log above)")
                time.sleep(0.1)
            config = _config(upstream, sidecar, workdir)
            gw = start(
                "kongsim",
                [
                    py,
                    "-m",
                    "kongsim",
                    "--config",
                    str(config),
                    "--listen",
                    gateway,
                    "--prefix",
                    str(workdir / "kong"),
                    # Kong does not wait for its plugin servers; the demo does, so that the
                    # first curl is not a 500 while the plugin server starts
                    "--wait",
                ],
            )
            _wait_http(f"http://{gateway}/_kongsim/status", gw, "kongsim")
            print(
                f"\nStrata is running: gateway http://{gateway} -> upstream http://{upstream},"
                f" sidecar {sidecar}.\nTry:\n"
                f"  curl -si http://{gateway}/products/1 | grep -i cache   # Miss, then Hit\n"
                f"  curl -si http://{gateway}/slow | grep -i cache         # 500 ms, then instant\n"
                f"  curl -si -H 'apikey: alice-secret-key' 'http://{gateway}/me?shared=1'\n"
                f"  curl -si -X PUT -d '{{\"price\": 1}}' http://{gateway}/products/1  # purges\n"
                "Ctrl-C stops everything.\n",
                flush=True,
            )
            while not stop:
                for name, proc in procs:
                    if proc.poll() is not None:
                        print(f"make run: {name} exited ({proc.returncode}); stopping", flush=True)
                        stop = True
                time.sleep(0.2)
        finally:
            for name, proc in reversed(procs):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(15)
                    except subprocess.TimeoutExpired:
                        print(f"make run: {name} did not stop; killing it", flush=True)
                        proc.kill()
                        proc.wait(5)
    print("make run: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

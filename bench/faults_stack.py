"""The processes of the fault suite's stack: a checkout's sidecars and kongsim (which
starts that checkout's plugin server), and the suite's own origin.

They run the code of a `bench.faults_procs.Checkout` and are registered with its `Watch`.
Sidecars are started with `tools.stack.SidecarProcess` (which imports none of the product's
modules either); the private real servers are `bench.faults_services`.

Not guaranteed: that a sidecar started while another still holds the socket path answers
there (`Sidecars.wait_answering` says whether it did).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.faults_procs import HERE, Checkout, Proc, Watch
from bench.procs import wait_http
from tools.stack import SidecarProcess, SidecarStartError, free_port


def get_json(url: str, timeout: float = 5) -> Any:
    import json  # noqa: PLC0415

    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.load(resp)


class Sidecars:
    """Sidecar processes of one configuration (same socket, same metrics port)."""

    def __init__(
        self, checkout: Checkout, workdir: Path, settings: Mapping[str, str], watch: Watch
    ) -> None:
        self.checkout = checkout
        self.workdir = workdir
        self.address = f"unix:{workdir / 'sidecar.sock'}"
        self.settings = dict(settings)
        self.watch = watch
        self.all: list[Proc] = []
        self.current: Proc | None = None
        self._processes: dict[int, SidecarProcess] = {}  # by pid

    def spawn(self) -> Proc:
        """Start one more sidecar (the checkout's code) without waiting for it."""
        name = f"sidecar-{len(self.all) + 1}"
        process = SidecarProcess(
            self.address,
            env=self.checkout.env(),
            cwd=self.checkout.root,
            settings=self.settings,
            log=self.workdir / f"{name}.log",
        )
        popen = process.spawn()
        self._processes[popen.pid] = process
        proc = self.watch.add(Proc(name, popen, process.log or Path(os.devnull)))
        self.all.append(proc)
        return proc

    def wait_answering(self, proc: Proc, timeout: float) -> bool:
        """Wait until `proc` answers at the socket path as its owner (so the answer is not
        an older sidecar's). False if `proc` exits first or time runs out (it is left
        running then)."""
        try:
            self._processes[proc.pid].wait_serving(timeout, kill_on_timeout=False)
        except SidecarStartError:
            return False
        return True

    def start(self, timeout: float = 60) -> Proc:
        """Spawn one and wait until it answers (RuntimeError if it does not)."""
        proc = self.spawn()
        if not self.wait_answering(proc, timeout):
            raise RuntimeError(f"sidecar did not start:\n{proc.log_tail()}")
        self.current = proc
        return proc

    def stop(self, proc: Proc, timeout: float) -> float | None:
        """SIGTERM and wait; SIGKILL after `timeout`. Seconds it took, None if killed."""
        t0 = time.monotonic()
        proc.signal(signal.SIGTERM)
        if proc.wait(timeout):
            return time.monotonic() - t0
        proc.signal(signal.SIGKILL)
        proc.wait(10)
        return None

    def stop_all(self) -> None:
        for proc in self.all:
            if proc.alive():
                self.stop(proc, 15)


class Origin:
    """The suite's origin (`bench/faults_upstream.py`), counting the requests it serves."""

    def __init__(self, workdir: Path, large_share: float, delay_ms: float, watch: Watch) -> None:
        self.address = f"127.0.0.1:{free_port()}"
        log = workdir / "origin.log"
        argv = [sys.executable, str(HERE / "faults_upstream.py"), "--listen", self.address,
                "--large-share", str(large_share), "--delay-ms", str(delay_ms)]  # fmt: skip
        with log.open("ab") as out:
            popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        self.proc = watch.add(Proc("origin", popen, log))
        wait_http(f"http://{self.address}/_origin/count", "the origin", popen)

    def count(self) -> int:
        return int(get_json(f"http://{self.address}/_origin/count")["items"])

    def stop(self) -> None:
        self.proc.signal(signal.SIGTERM)
        if not self.proc.wait(10):
            self.proc.signal(signal.SIGKILL)
            self.proc.wait(5)


def gateway_config(origin: str, sidecar: str, plugin: Mapping[str, Any]) -> dict[str, Any]:
    config = {**plugin, "sidecar": {**plugin.get("sidecar", {}), "address": sidecar}}
    return {
        "_format_version": "3.0",
        "services": [
            {
                "name": "origin",
                "url": f"http://{origin}",
                "routes": [
                    {
                        "name": "items",
                        "paths": ["/items"],
                        "strip_path": False,
                        "plugins": [{"name": "strata-cache", "config": config}],
                    }
                ],
            }
        ],
    }


class Gateway:
    """kongsim (not strict: it fails open as Kong does) with the checkout's plugin server."""

    def __init__(
        self, checkout: Checkout, workdir: Path, config: Mapping[str, Any], watch: Watch
    ) -> None:
        import yaml  # noqa: PLC0415

        self.address = f"127.0.0.1:{free_port()}"
        path = workdir / "kong.yml"
        path.write_text(yaml.safe_dump(dict(config)))
        log = workdir / "kongsim.log"
        argv = [sys.executable, "-m", "kongsim", "--config", str(path), "--listen", self.address,
                "--prefix", str(workdir / "kong"), "--log-level", "warn", "--wait",
                "--nginx-main-env", "PYTHONPATH"]  # fmt: skip
        with log.open("ab") as out:
            popen = subprocess.Popen(
                argv, cwd=checkout.root, env=checkout.env(), stdout=out, stderr=subprocess.STDOUT
            )
        self.proc = watch.add(Proc("kongsim", popen, log))
        self.base_url = f"http://{self.address}"
        wait_http(f"{self.base_url}/_kongsim/status", "kongsim", popen)

    def plugin_servers(self) -> dict[str, Any]:
        """Per plugin server: pid, restarts and exit codes (kongsim's status)."""
        try:
            servers = get_json(f"{self.base_url}/_kongsim/status")["plugin_servers"]
        except OSError as exc:
            return {"error": f"kongsim status unavailable: {exc}"}
        return {
            name: {k: s.get(k) for k in ("pid", "restarts", "exit_codes")}
            for name, s in servers.items()
        }

    def stop(self) -> None:
        self.proc.signal(signal.SIGTERM)
        if not self.proc.wait(15):
            self.proc.signal(signal.SIGKILL)
            self.proc.wait(5)

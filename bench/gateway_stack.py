"""What `bench gateway` runs: the routes, the plugin-server variants, one kongsim per variant.

A variant is an (engine, workers) pair of the strata-cache plugin server, written
``ENGINE/WORKERS`` (``strata/2``, ``kong-pdk/1``), or ``default``: the server's own default
command with neither flag (for a checkout whose server has no such flags). Each variant gets
its own kongsim process (with the plugin server it starts), in front of the same upstream and
sidecar.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bench.procs import wait_http

ENGINES = ("strata", "kong-pdk")
DEFAULT_VARIANTS = "kong-pdk/1,strata/1,strata/2"
PLUGIN_SERVER = "strata-cache"


@dataclass(frozen=True)
class Variant:
    """One way to run the plugin server; ``engine``/``workers`` None: the server's default."""

    engine: str | None = None
    workers: int | None = None

    @property
    def name(self) -> str:
        return "default" if self.engine is None else f"{self.engine}/{self.workers}"

    @classmethod
    def parse(cls, text: str) -> Variant:
        """``ENGINE/WORKERS`` or ``default``; ValueError naming the text otherwise."""
        text = text.strip()
        if text == "default":
            return cls()
        engine, sep, workers = text.partition("/")
        if not sep or engine not in ENGINES or not workers.isdigit() or int(workers) < 1:
            raise ValueError(
                f"invalid variant {text!r}: expected ENGINE/WORKERS (engine one of "
                f"{', '.join(ENGINES)}, workers >= 1) or 'default'"
            )
        return cls(engine, int(workers))

    def start_command(self) -> str:
        """The plugin server's start command, as a kongsim ``--plugin-server`` template."""
        cmd = f"{{python}} -m kong_plugin -p {{prefix}} --socket-name {PLUGIN_SERVER}.socket"
        if self.engine is not None:
            cmd += f" --engine {self.engine} --workers {self.workers}"
        return cmd

    def plugin_server_option(self) -> str:
        """kongsim's ``--plugin-server NAME=START_CMD;QUERY_CMD`` for this variant."""
        return f"{PLUGIN_SERVER}={self.start_command()};{{python}} -m kong_plugin --dump"


def parse_variants(text: str) -> list[Variant]:
    """A comma-separated list of variants, in order, without repeats (ValueError otherwise)."""
    variants = [Variant.parse(part) for part in text.split(",") if part.strip()]
    names = [v.name for v in variants]
    if not variants or len(set(names)) != len(names):
        raise ValueError(f"variants must be a non-empty list without repeats: {text!r}")
    return variants


def kong_config(upstream: str, sidecar: str) -> dict[str, Any]:
    """Four routes: no plugin (fast upstream), hit, miss (both strata-cache, fast upstream),
    no plugin to an upstream answering after 10 ms."""
    strata = {"name": PLUGIN_SERVER, "config": {"sidecar": {"address": sidecar}}}
    return {
        "_format_version": "3.0",
        "services": [
            {
                "name": "fast",
                "url": f"http://{upstream}/delay",
                "routes": [
                    {"name": "noplugin", "paths": ["/noplugin"]},
                    {"name": "hit", "paths": ["/hit"], "plugins": [strata]},
                    {"name": "miss", "paths": ["/miss"], "plugins": [strata]},
                ],
            },
            {
                "name": "slow",
                "url": f"http://{upstream}/delay/10",
                "routes": [{"name": "slow10", "paths": ["/slow10"]}],
            },
        ],
    }


class Gateway:
    """kongsim (and through it the plugin server of one variant) as a child process."""

    def __init__(
        self, variant: Variant, config: Path, listen: str, prefix: Path, env: dict[str, str]
    ) -> None:
        self.variant, self.listen = variant, listen
        self.argv = [
            sys.executable,
            "-m",
            "kongsim",
            "--config",
            str(config),
            "--listen",
            listen,
            "--prefix",
            str(prefix),
            "--log-level",
            "warn",
            "--wait",
            "--plugin-server",
            variant.plugin_server_option(),
        ]
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://{self.listen}"

    def start(self, log: IO[bytes]) -> None:
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=log)
        wait_http(f"{self.base}/_kongsim/status", f"kongsim ({self.variant.name})", self.proc)

    def pids(self) -> dict[str, int]:
        """kongsim's pid and the plugin server's (the root of its process tree)."""
        assert self.proc is not None
        with urllib.request.urlopen(f"{self.base}/_kongsim/status", timeout=5) as r:
            status = json.load(r)
        server = status["plugin_servers"][PLUGIN_SERVER]
        return {"kongsim": self.proc.pid, "plugin_server": int(server["pid"])}

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

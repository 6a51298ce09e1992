"""Recipe: a Redis server with no persistence (``--save ""``, no AOF), protected mode on.

Not guaranteed: anything survives a restart; the data dir is deleted when it is cleaned.
"""

from __future__ import annotations

from pathlib import Path

import redis

from tools.services.base import HOST, Options, Record, Server, ServiceError
from tools.services.procs import spawn, which


def _start(run_dir: Path, port: int, opts: Options) -> Record:
    data = run_dir / "redis"
    data.mkdir(exist_ok=True)
    argv = [which("redis-server"), "--bind", HOST, "--port", str(port), "--daemonize", "no",
            "--dir", str(data), "--save", "", "--appendonly", "no",
            "--protected-mode", "yes"]  # fmt: skip
    return spawn("redis", argv, run_dir, port)


def _check(rec: Record) -> None:
    with redis.Redis(host=HOST, port=rec.port, socket_timeout=2, socket_connect_timeout=2) as r:
        if r.ping() is not True:
            raise ServiceError("PING was not answered PONG")
        pid = r.info("server")["process_id"]
    if pid != rec.pid:
        raise ServiceError(f"port {rec.port} is served by Redis pid {pid}, not ours ({rec.pid})")


def _env(rec: Record, run_dir: Path) -> dict[str, str]:
    return {"STRATA_TEST_REDIS_URL": f"redis://{HOST}:{rec.port}/0"}


SERVER = Server("redis", "redis-server", _start, _check, _env, ("redis",))

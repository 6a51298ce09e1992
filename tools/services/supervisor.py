"""Start, check and stop the recipes' servers in a run dir, keeping ``state.json`` and
``services.env`` current.

``up`` is idempotent: a recorded server that is still ours (same pid, same process start time,
same program) and healthy is kept with its port; anything else is stopped if it is ours,
cleaned and started fresh, on its recorded port when that is free (so processes started
with the old address, such as the sidecars of `make cluster`, find it again). If a server
fails to start, the servers this ``up`` started are stopped again. ``down`` stops recorded
servers by pid (SIGTERM, then SIGKILL after 10 s; PostgreSQL with ``pg_ctl -m fast stop``),
deletes their data, keeps their logs and removes the env file. It never signals a pid
whose ``/proc`` entry no longer matches what was recorded. ``status`` exits 0 only if at
least one server is recorded and every recorded one is healthy.

Not guaranteed: safety against other tools using the same run dir (``up``, ``down`` and
``restart`` take the run dir's lock, so they serialise; ``status`` takes none); finding
servers again after a lost ``state.json`` (except a PostgreSQL still running in
``<run-dir>/pg``).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tools.services import memcached, postgres, prometheus, redis, tansu
from tools.services.base import (
    HOST,
    START_ATTEMPTS,
    ExitedEarlyError,
    Options,
    Record,
    Server,
    ServiceError,
)
from tools.services.procs import alive, free_port, is_ours, owns_port, port_free, terminate
from tools.services.state import (
    locked,
    log_tail,
    read_state,
    resolve_run_dir,
    save_record,
    write_env_file,
    write_state,
)

SERVERS: tuple[Server, ...] = (
    redis.SERVER,
    memcached.SERVER,
    postgres.SERVER,
    prometheus.SERVER,
    tansu.SERVER,
)
SERVER_NAMES = tuple(s.name for s in SERVERS)


def select(only: Sequence[str] | None) -> list[Server]:
    """The recipes named in ``only`` (all without it), in start order."""
    if not only:
        return list(SERVERS)
    unknown = sorted(set(only) - set(SERVER_NAMES))
    if unknown:
        raise ServiceError(
            f"unknown server(s) {', '.join(unknown)}; known: {', '.join(SERVER_NAMES)}"
        )
    return [s for s in SERVERS if s.name in only]


def env_of(run_dir: Path, state: dict[str, Record]) -> dict[str, str]:
    """The ``services.env`` lines of the recorded servers, in start order."""
    env: dict[str, str] = {}
    for server in SERVERS:
        if server.name in state:
            env.update(server.env(state[server.name], run_dir))
    return env


def _write_env(run_dir: Path) -> Path:
    return write_env_file(run_dir, env_of(run_dir, read_state(run_dir)))


def _stop(server: Server, rec: Record) -> None:
    if server.stop is not None:
        server.stop(rec)
    else:
        terminate(server, rec)


def _clean(server: Server, run_dir: Path, rec: Record | None) -> None:
    """Delete what a stopped server left in the run dir (its log stays)."""
    if server.clean is not None:
        server.clean(run_dir, rec)
        return
    for sub in server.data_dirs:
        shutil.rmtree(run_dir / sub, ignore_errors=True)
    (run_dir / f"{server.name}.pid").unlink(missing_ok=True)


def _health(server: Server, rec: Record) -> None:
    """Raise unless ``rec``'s process listens on its port and answers the server's protocol."""
    if owns_port(rec.pid, rec.port) is False:
        raise ServiceError(f"pid {rec.pid} is not listening on {HOST}:{rec.port}")
    server.check(rec)


def _wait_healthy(server: Server, rec: Record, run_dir: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not alive(rec.pid):
            log = log_tail(run_dir / f"{server.name}.log")
            raise ExitedEarlyError(f"{server.name}: exited before it became healthy\n{log}")
        try:
            _health(server, rec)
            return
        except Exception as exc:  # any client error just means "not yet"
            last = f"{type(exc).__name__}: {exc}".splitlines()[0]
        if time.monotonic() >= deadline:
            log = log_tail(run_dir / f"{server.name}.log")
            raise ServiceError(f"{server.name}: not healthy after {timeout:.0f} s ({last})\n{log}")
        time.sleep(0.1)


def _start(server: Server, run_dir: Path, opts: Options, prefer_port: int | None = None) -> Record:
    """Start ``server`` and wait until healthy: on `prefer_port` when it is free (a server
    that died comes back where its clients look for it), else on a fresh port; retry on a
    fresh port if it exits early."""
    for attempt in range(1, START_ATTEMPTS + 1):
        rec: Record | None = None
        port = free_port()
        if attempt == 1 and prefer_port is not None and port_free(f"{HOST}:{prefer_port}"):
            port = prefer_port
        try:
            rec = server.start(run_dir, port, opts)
            save_record(run_dir, server.name, rec)
            _wait_healthy(server, rec, run_dir, opts.timeout)
            return rec
        except ExitedEarlyError:
            if rec is not None:
                _stop(server, rec)
            if attempt == START_ATTEMPTS:
                raise
            _log(f"{server.name}: exited early; retry {attempt + 1}/{START_ATTEMPTS} on a new port")
        except BaseException:
            if rec is not None:
                _stop(server, rec)
            raise
    raise AssertionError("unreachable")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _address(rec: Record) -> str:
    return f"{HOST}:{rec.port}  pid {rec.pid}"


def up(
    run_dir: str | os.PathLike[str] | None = None,
    only: Sequence[str] | None = None,
    opts: Options | None = None,
) -> Path:
    """Make the selected servers run and be healthy; write and return the env file's path."""
    opts = opts or Options()
    selected, root = select(only), resolve_run_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    started: list[Server] = []
    with locked(root):
        try:
            for server in selected:
                t0 = time.monotonic()
                rec = read_state(root).get(server.name)
                old_port = rec.port if rec is not None else None
                if rec is not None and is_ours(server, rec):
                    try:
                        _health(server, rec)
                    except Exception as exc:
                        _log(f"{server.name:<11} unhealthy ({exc}); restarting")
                    else:
                        if server is prometheus.SERVER:
                            prometheus.reload(root, rec)  # a newer recipe's configuration
                            if opts.prometheus_targets is not None:
                                prometheus.set_prometheus_targets(root, opts.prometheus_targets)
                        _log(f"{server.name:<11} kept     {_address(rec)}")
                        continue
                started.append(server)
                _forget(root, [server])  # stop it if it is ours, clean stale pid file and data
                rec = _start(server, root, opts, prefer_port=old_port)
                again = " (its port again)" if rec.port == old_port else ""
                took = time.monotonic() - t0
                _log(f"{server.name:<11} started  {_address(rec)}  ({took:.2f} s){again}")
        except BaseException:
            for message in _forget(root, started):
                _log(f"rollback: {message}")
            _write_env(root)
            raise
        return _write_env(root)


def _forget(run_dir: Path, servers: Sequence[Server]) -> list[str]:
    """Stop ``servers`` (newest first) if recorded, clean their data, drop their records."""
    messages = []
    for server in reversed(servers):
        state = read_state(run_dir)
        rec = state.pop(server.name, None)
        if rec is None:
            messages.append(f"{server.name:<11} not running")
        else:
            was_ours = is_ours(server, rec)
            _stop(server, rec)
            note = "stopped " if was_ours else "gone (pid not ours any more, left alone)"
            messages.append(f"{server.name:<11} {note} {_address(rec)}")
        _clean(server, run_dir, rec)
        write_state(run_dir, state)
    return messages


def down(run_dir: str | os.PathLike[str] | None = None, only: Sequence[str] | None = None) -> None:
    """Stop the selected recorded servers; remove the env file once none is left."""
    root = resolve_run_dir(run_dir)
    if not root.is_dir():
        return
    with locked(root):
        for message in _forget(root, select(only)):
            _log(message)
        _write_env(root)


def status(
    run_dir: str | os.PathLike[str] | None = None, only: Sequence[str] | None = None
) -> bool:
    """Print each server's state; True if some are recorded and all recorded are healthy."""
    root = resolve_run_dir(run_dir)
    state = read_state(root) if root.is_dir() else {}
    recorded = healthy = 0
    for server in select(only):
        rec = state.get(server.name)
        if rec is None:
            print(f"{server.name:<11} not running")
            continue
        recorded += 1
        if not is_ours(server, rec):
            print(f"{server.name:<11} DEAD     {_address(rec)} (process gone or replaced)")
            continue
        try:
            _health(server, rec)
        except Exception as exc:
            print(f"{server.name:<11} UNHEALTHY {_address(rec)}: {exc}".splitlines()[0])
            continue
        healthy += 1
        print(f"{server.name:<11} healthy  {_address(rec)}")
    return recorded > 0 and healthy == recorded


def running(run_dir: str | os.PathLike[str] | None, name: str) -> Record | None:
    """The record of server ``name`` if it is recorded and still our process, else None."""
    (server,) = select([name])
    rec = read_state(resolve_run_dir(run_dir)).get(name)
    return rec if rec is not None and is_ours(server, rec) else None


def healthy(run_dir: str | os.PathLike[str] | None, name: str) -> bool:
    """Whether server ``name`` is recorded, ours, and answers its protocol now."""
    rec = running(run_dir, name)
    if rec is None:
        return False
    try:
        select([name])[0].check(rec)
    except Exception:
        return False
    return True


def restart(run_dir: str | os.PathLike[str] | None, name: str, timeout: float) -> Record:
    """Start server ``name`` again on its recorded port and data (after it was killed) and
    wait until healthy; records the new process. No retry on another port: if the port was
    taken meanwhile, this fails and says so."""
    (server,) = select([name])
    root = resolve_run_dir(run_dir)
    with locked(root):
        old = read_state(root).get(name)
        if old is None:
            raise ServiceError(f"{name}: not recorded in {root}; nothing to restart")
        rec = server.start(root, old.port, Options(timeout=timeout))
        save_record(root, name, rec)
        _wait_healthy(server, rec, root, timeout)
    return rec

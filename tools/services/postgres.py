"""Recipe: a fresh PostgreSQL cluster with a ``strata`` database, trust auth, fsync off.

As root it runs as the ``postgres`` OS user (PostgreSQL refuses to run as root). When that
user cannot reach the run dir (e.g. under /root) or the unix socket path would be too long,
the cluster lives in a ``/tmp/strata-pg-*`` directory, recorded in ``state.json`` and deleted
when the server is cleaned. Only the root branch was run on the build machine.

Not guaranteed: durability (fsync off), any access control (trust auth).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tools.services.base import (
    HOST,
    STOP_TIMEOUT_S,
    ExitedEarlyError,
    Options,
    Record,
    Server,
    ServiceError,
)
from tools.services.procs import is_ours, is_root, proc_stat, program, terminate, wait_gone
from tools.services.state import log_tail, read_state, save_record

PG_DATABASE = "strata"
PG_TMP = Path("/tmp")  # not $TMPDIR: the postgres user must be able to reach it


def pg_bin() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin``; ServiceError if there is none."""
    dirs = glob.glob("/usr/lib/postgresql/*/bin")
    dirs = [d for d in dirs if os.path.basename(os.path.dirname(d)).isdigit()]
    if not dirs:
        raise ServiceError("postgres: no /usr/lib/postgresql/<version>/bin (apt-get install it)")
    return Path(max(dirs, key=lambda d: int(os.path.basename(os.path.dirname(d)))))


def _as_postgres(argv: list[str]) -> list[str]:
    """As root, run ``argv`` as the postgres OS user."""
    return ["runuser", "-u", "postgres", "--", *argv] if is_root() else argv


def _pg_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def pg_run(argv: list[str], cwd: Path, log_path: Path, timeout: float) -> int:
    """Run a PostgreSQL program (as the postgres user when root), output appended to
    ``log_path``; its exit code."""
    # Output goes to a file, never a pipe: the postmaster inherits it and would hold a pipe open.
    with open(log_path, "ab") as log:
        return subprocess.run(
            _as_postgres(argv), cwd=cwd, env=_pg_env(), stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, timeout=timeout, check=False,
            start_new_session=True,
        ).returncode  # fmt: skip


def _pg_root(run_dir: Path) -> Path:
    """``<run-dir>/pg`` if postgres can use it, else a fresh ``/tmp/strata-pg-*`` directory."""
    root = run_dir / "pg"
    socket_path = root / "sock" / ".s.PGSQL.65535"
    fits = len(str(socket_path)) < 100  # unix socket paths are limited to 107 bytes
    if fits:
        root.mkdir(exist_ok=True)
        if not is_root():
            return root
        shutil.chown(root, "postgres", "postgres")
        probe = ["runuser", "-u", "postgres", "--", "test", "-w", str(root), "-a", "-x", str(root)]
        if subprocess.run(probe, check=False).returncode == 0:
            return root
        shutil.rmtree(root)
    root = Path(tempfile.mkdtemp(prefix="strata-pg-", dir=PG_TMP))
    if is_root():
        shutil.chown(root, "postgres", "postgres")
    return root


def _start(run_dir: Path, port: int, opts: Options) -> Record:
    bin_dir, log_path = pg_bin(), run_dir / "postgres.log"
    state = read_state(run_dir).get("postgres")  # a retry after a port clash reuses the cluster
    root = Path(state.pg_root) if state and state.pg_root else _pg_root(run_dir)
    data, sock = root / "data", root / "sock"
    # Recorded before initdb so that a failed start is cleaned up like any other.
    save_record(run_dir, "postgres", Record(pid=-1, port=port, start_ticks=-1, pg_root=str(root)))
    if not (data / "PG_VERSION").exists():
        sock.mkdir(exist_ok=True)
        if is_root():
            shutil.chown(sock, "postgres", "postgres")
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--locale=C.UTF-8"]  # fmt: skip
        if pg_run(initdb, root, log_path, timeout=120) != 0:
            raise ServiceError(f"postgres: initdb failed\n{log_tail(log_path)}")
    server_opts = (f"-p {port} -c listen_addresses={HOST} -k {shlex.quote(str(sock))} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   # logical decoding, for `strata cdc` (a replication slot per test)
                   "-c wal_level=logical -c max_replication_slots=20 "
                   "-c max_wal_senders=20")  # fmt: skip
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-t", str(int(opts.timeout)),
              "-o", server_opts, "start"]  # fmt: skip
    if pg_run(pg_ctl, root, log_path, timeout=opts.timeout + 10) != 0:
        _stop_stray_postmaster(data)  # pg_ctl -w also fails when the start is merely slow
        raise ExitedEarlyError(f"postgres: pg_ctl start failed\n{log_tail(log_path)}")
    pid = int((data / "postmaster.pid").read_text(encoding="ascii").split()[0])
    (run_dir / "postgres.pid").write_text(f"{pid}\n", encoding="ascii")
    stat = proc_stat(pid)
    rec = Record(pid=pid, port=port, start_ticks=stat[1] if stat else -1, pg_root=str(root))
    dsn = f"postgresql://postgres@{HOST}:{port}/postgres"
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,))
        if exists.fetchone() is None:
            conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
    return rec


def _dsn(rec: Record) -> str:
    return f"postgresql://postgres@{HOST}:{rec.port}/{PG_DATABASE}"


def _check(rec: Record) -> None:
    with psycopg.connect(_dsn(rec), connect_timeout=3) as conn:
        row = conn.execute("SELECT 1").fetchone()
    if row != (1,):
        raise ServiceError(f"SELECT 1 returned {row!r}")


def _stop(rec: Record) -> None:
    if not is_ours(SERVER, rec):
        return
    pg_ctl = [str(pg_bin() / "pg_ctl"), "-D", str(Path(rec.pg_root) / "data"), "-m", "fast",
              "-w", "-t", str(int(STOP_TIMEOUT_S)), "stop"]  # fmt: skip
    # The postmaster still writes its shutdown messages to postgres.log (inherited fd).
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        pg_run(pg_ctl, Path(rec.pg_root), Path(os.devnull), timeout=STOP_TIMEOUT_S + 5)
    if not wait_gone(rec.pid, 1.0):
        terminate(SERVER, rec)


def _clean(run_dir: Path, rec: Record | None) -> None:
    roots = {run_dir / "pg"}
    if rec and rec.pg_root:
        root = Path(rec.pg_root)
        # Only directories this module creates; state.json is not trusted with rmtree.
        if root == run_dir / "pg" or (root.parent == PG_TMP and root.name.startswith("strata-pg-")):
            roots.add(root)
    for root in roots:
        _stop_stray_postmaster(root / "data")
        shutil.rmtree(root, ignore_errors=True)
    (run_dir / "postgres.pid").unlink(missing_ok=True)


def _stop_stray_postmaster(data: Path) -> None:
    """Stop a postmaster still running on ``data`` although nothing records it."""
    try:
        pid = int((data / "postmaster.pid").read_text(encoding="ascii").split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError, IndexError):
        return
    if program(pid) == "postgres" and str(data) in cmdline:
        stat = proc_stat(pid)
        _stop(Record(pid=pid, port=0, start_ticks=stat[1] if stat else -1,
                     pg_root=str(data.parent)))  # fmt: skip


def _env(rec: Record, run_dir: Path) -> dict[str, str]:
    return {"STRATA_TEST_POSTGRES_DSN": _dsn(rec)}


SERVER = Server("postgres", "postgres", _start, _check, _env, stop=_stop, clean=_clean)

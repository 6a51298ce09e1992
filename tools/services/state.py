"""The run dir's files: ``state.json`` (one `Record` per server), ``services.env`` and the lock.

Files are replaced atomically (temp file + rename), so a reader sees the old or the new text,
never a mix. Not guaranteed: that ``state.json`` still describes live processes (the
supervisor checks that through ``/proc``); ``load_env`` takes no lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from tools.services.base import REPO_ROOT, Record, ServiceError

DEFAULT_RUN_DIR = REPO_ROOT / ".run" / "services"
RUN_DIR_ENV = "STRATA_RUN_DIR"
ENV_FILE = "services.env"
STATE_FILE = "state.json"


def resolve_run_dir(run_dir: str | os.PathLike[str] | None = None) -> Path:
    """The run dir: the argument, else ``$STRATA_RUN_DIR``, else ``<repo>/.run/services``."""
    chosen = run_dir if run_dir is not None else os.environ.get(RUN_DIR_ENV) or DEFAULT_RUN_DIR
    return Path(chosen).expanduser().resolve()


def parse_env(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines as a dict; blank lines, ``#`` comments and lines without ``=``
    are skipped, and whitespace around keys and values is dropped."""
    env: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip()
    return env


def format_env(env: Mapping[str, str]) -> str:
    """The text of an env file holding ``env`` (one ``KEY=VALUE`` line each, in order)."""
    return "".join(f"{k}={v}\n" for k, v in env.items())


def load_env(run_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """The ``KEY=VALUE`` pairs of ``<run-dir>/services.env``; ``{}`` if the file is absent."""
    try:
        text = (resolve_run_dir(run_dir) / ENV_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    return parse_env(text)


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` by a file holding ``text`` (mode 0644), through a temp file + rename."""
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


def read_state(run_dir: Path) -> dict[str, Record]:
    """The recorded servers by name; ``{}`` without a state file; ServiceError if unreadable."""
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


def write_state(run_dir: Path, state: Mapping[str, Record]) -> None:
    """Record ``state``; an empty one removes the state file."""
    if not state:
        (run_dir / STATE_FILE).unlink(missing_ok=True)
        return
    data = {name: dataclasses.asdict(rec) for name, rec in state.items()}
    write_atomically(run_dir / STATE_FILE, json.dumps(data, indent=2) + "\n")


def save_record(run_dir: Path, name: str, rec: Record) -> None:
    """Record (or replace) one server's entry, keeping the others."""
    state = read_state(run_dir)
    state[name] = rec
    write_state(run_dir, state)


def write_env_file(run_dir: Path, env: Mapping[str, str]) -> Path:
    """Write ``<run-dir>/services.env`` holding ``env`` (removed when empty); its path."""
    path = run_dir / ENV_FILE
    if env:
        write_atomically(path, format_env(env))
    else:
        path.unlink(missing_ok=True)
    return path


@contextlib.contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold ``<run-dir>/.lock`` exclusively (blocking until other holders let go)."""
    with open(run_dir / ".lock", "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def log_tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log, indented for an error message."""
    try:
        tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return f"  (no log at {path})"
    return "\n".join(f"  | {line}" for line in tail) or f"  (empty log {path})"

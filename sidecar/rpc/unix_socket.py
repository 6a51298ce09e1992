"""Owning the sidecar's unix socket path without ever losing it or deleting someone else's.

A sidecar binds its socket under a unique temporary name in the socket's own folder and,
once it serves, renames it over the configured path (`rename(2)` replaces atomically: a
client connecting through the path reaches either the old socket or the new one, never
nothing). What may be at the path beforehand:

- nothing, or a socket nobody answers on (ECONNREFUSED: a dead sidecar's leftover): replaced;
- a socket that answers: a running sidecar. It is taken over (logged by the caller, with the
  old owner's pid read from SO_PEERCRED); the old sidecar notices that the path no longer
  names the socket it bound (`OwnedSocket.state`) and drains;
- anything else (a regular file, a folder, a FIFO): `SocketPathError`; nothing is touched.

On exit a sidecar removes the path only while it still names the socket it bound (same
st_dev/st_ino). The rename and that check-then-unlink run under an advisory `flock` on the
folder, so a sidecar exiting cannot remove the socket of one that is taking over at that
very moment.

Not guaranteed: anything against processes that ignore the lock (a person running `rm`);
the old owner's pid when it runs in another pid namespace (then it is None); the lock on a
file system without flock on folders (NFS): it is then skipped and the race above is
possible again, although the window is a few microseconds.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import socket
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

#: Linux limit on a unix socket path (sun_path is 108 bytes with the final NUL).
MAX_PATH_BYTES = 107
_PEERCRED = struct.Struct("3i")  # pid, uid, gid


class SocketPathError(OSError):
    """The socket path cannot be used: it holds something that is not a socket, or its
    folder cannot be used. Raised at start-up only; the message names the path."""


class PathKind(Enum):
    MISSING = "missing"
    STALE = "stale"  # a socket nobody answers on
    LIVE = "live"  # a socket another process answers on


@dataclass(frozen=True, slots=True)
class PathState:
    kind: PathKind
    #: The pid of the process listening on a LIVE socket, when the kernel tells.
    owner_pid: int | None = None


class Ownership(Enum):
    OURS = "ours"
    REPLACED = "replaced"  # another socket (or file) is at the path now
    MISSING = "missing"


def inspect(path: str, timeout_s: float = 1.0) -> PathState:
    """What is at `path` now. Raises `SocketPathError` for anything but a socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return PathState(PathKind.MISSING)
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketPathError(
            errno.EEXIST,
            f"{path} exists and is not a socket ({_describe(st.st_mode)}); "
            "remove it or set another listen path",
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(timeout_s)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        return PathState(PathKind.STALE)
    except FileNotFoundError:  # removed since the lstat
        return PathState(PathKind.MISSING)
    except TimeoutError:  # listening, backlog full: someone is there
        return PathState(PathKind.LIVE)
    except OSError as exc:
        raise SocketPathError(exc.errno, f"{path}: cannot connect to check it: {exc}") from exc
    else:
        return PathState(PathKind.LIVE, _peer_pid(probe))
    finally:
        probe.close()


def _peer_pid(sock: socket.socket) -> int | None:
    try:
        pid, _uid, _gid = _PEERCRED.unpack(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        )
    except (OSError, AttributeError):
        return None
    return pid or None


def _describe(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    return "not a socket"


def temp_path_beside(path: str) -> str:
    """A fresh, unused name in `path`'s folder for binding before the rename."""
    folder, base = os.path.split(path)
    for candidate in (f".{base}.{secrets.token_hex(4)}", f".s{secrets.token_hex(4)}"):
        temp = os.path.join(folder, candidate)
        if len(temp.encode()) <= MAX_PATH_BYTES:
            return temp
    raise SocketPathError(
        errno.ENAMETOOLONG,
        f"{path}: its folder name is too long to bind a socket beside it "
        f"(unix socket paths are limited to {MAX_PATH_BYTES} bytes)",
    )


@contextlib.contextmanager
def _folder_lock(folder: str) -> Iterator[None]:
    """An exclusive flock on the folder, or nothing where that is not supported."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


class OwnedSocket:
    """The path of one sidecar's socket: bound at `temp_path`, published at `path`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.folder = os.path.dirname(path) or "/"
        self.temp_path = temp_path_beside(path)
        self._identity: tuple[int, int] | None = None

    def prepare(self) -> PathState:
        """Check the path before binding (creating its folder); raises `SocketPathError`
        if something other than a socket is there."""
        try:
            os.makedirs(self.folder, exist_ok=True)
        except OSError as exc:
            raise SocketPathError(exc.errno, f"{self.folder}: cannot create it: {exc}") from exc
        return inspect(self.path)

    def publish(self) -> PathState:
        """Rename the bound socket over the path; returns what was there just before.

        Raises `SocketPathError` (and removes the temporary socket) when something other
        than a socket appeared at the path since `prepare`."""
        with _folder_lock(self.folder):
            try:
                before = inspect(self.path)
                st = os.stat(self.temp_path)
                os.rename(self.temp_path, self.path)
            except OSError as exc:
                self.discard_temp()
                if isinstance(exc, SocketPathError):
                    raise
                raise SocketPathError(exc.errno, f"{self.path}: cannot publish: {exc}") from exc
            self._identity = (st.st_dev, st.st_ino)
        return before

    def state(self) -> Ownership:
        """Whether the path still names the socket this sidecar published."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return Ownership.MISSING
        except OSError:
            return Ownership.OURS  # cannot tell (permissions changed): assume nothing moved
        return Ownership.OURS if (st.st_dev, st.st_ino) == self._identity else Ownership.REPLACED

    def release(self) -> bool:
        """Remove the path if it still names our socket. True if it was removed."""
        if self._identity is None:
            self.discard_temp()
            return False
        with _folder_lock(self.folder):
            if self.state() is not Ownership.OURS:
                return False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        return True

    def discard_temp(self) -> None:
        """Remove the temporary name if it is still there (a start that did not finish)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temp_path)

"""Owning the sidecar's unix socket path without ever losing it or deleting someone else's.

A sidecar binds its socket under a unique temporary name in the socket's own folder and,
once it serves, renames it over the configured path (`rename(2)` replaces atomically: a
client connecting through the path reaches either the old socket or the new one, never
nothing). What may be at the path beforehand:

- nothing, or a socket nobody answers on (ECONNREFUSED: a dead sidecar's leftover): replaced;
- a socket that answers, served by a process of this sidecar's own uid (SO_PEERCRED): a
  running sidecar. It is taken over (logged by the caller, with the old owner's pid) unless
  `takeover` is off; the old sidecar notices that the path no longer names the socket it
  bound (`OwnedSocket.state`) and drains;
- a socket that answers for another uid (or whose listener the kernel does not name):
  `SocketPathError` naming the path, pid and uid; nothing is touched;
- anything else (a regular file, a folder, a FIFO): `SocketPathError`; nothing is touched.

The folder: a missing one is created with mode 0750 whatever the umask. An existing folder
that another user could write to -- writable by group or others without the sticky bit, or
owned by a uid that is neither this sidecar's nor root's -- is refused (`SocketPathError`):
whoever can write to it can put their own socket at the path. A world- or group-writable
folder WITH the sticky bit (like /tmp) is accepted but flagged (`OwnedSocket.shared_folder`)
for the caller to warn: there, another user cannot replace a live socket they do not own,
but can take the free path while no sidecar holds it.

The socket is bound with umask 077 (`private_umask`) and set to `SOCKET_MODE` (0660) before
it is renamed over the path, so it is never reachable through the path with a wider mode.

On exit a sidecar removes the path only while it still names the socket it bound (same
st_dev/st_ino). The rename and that check-then-unlink run under an advisory `flock` on the
folder, so a sidecar exiting cannot remove the socket of one that is taking over at that
very moment.

Not guaranteed: anything against processes that ignore the lock (a person running `rm`);
the folder's own ancestors (only the folder itself is checked); a umask change by another
thread of this process while `private_umask` is in effect (the umask is process-wide);
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
#: The socket's mode: owner and group may connect, nobody else.
SOCKET_MODE = 0o660
#: The mode of a socket folder the sidecar creates.
FOLDER_MODE = 0o750
_PEERCRED = struct.Struct("3i")  # pid, uid, gid
_WRITABLE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH


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
    #: The uid of that process, when the kernel tells; for a STALE socket, the file's owner.
    owner_uid: int | None = None


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
        return PathState(PathKind.STALE, owner_uid=st.st_uid)
    except FileNotFoundError:  # removed since the lstat
        return PathState(PathKind.MISSING)
    except TimeoutError:  # listening, backlog full: someone is there
        return PathState(PathKind.LIVE)
    except OSError as exc:
        raise SocketPathError(
            exc.errno, f"{path}: cannot connect to check it: {exc.strerror or exc}"
        ) from exc
    else:
        pid, uid = _peer_cred(probe)
        return PathState(PathKind.LIVE, pid, uid)
    finally:
        probe.close()


def _peer_cred(sock: socket.socket) -> tuple[int | None, int | None]:
    """(pid, uid) of the process that listens on `sock`'s peer; None where not known (a
    pid of 0: the listener is in another pid namespace)."""
    try:
        pid, uid, _gid = _PEERCRED.unpack(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        )
    except (OSError, AttributeError):
        return None, None
    return (pid or None), uid


def admit(path: str, state: PathState, takeover: bool) -> None:
    """Raise `SocketPathError` unless what `state` found at `path` may be replaced: nothing,
    a stale socket this process's uid owns, or (with `takeover`) a live one served by this
    process's own uid."""
    if state.kind is PathKind.STALE and state.owner_uid != os.geteuid():
        raise SocketPathError(
            errno.EEXIST,
            f"{path} is a socket left by uid {_or_unknown(state.owner_uid)} that nobody "
            f"answers on; this sidecar runs as uid {os.geteuid()} and replaces only its own "
            "-- remove it or set another listen path",
        )
    if state.kind is not PathKind.LIVE:
        return
    who = f"pid {state.owner_pid or 'unknown'}, uid {_or_unknown(state.owner_uid)}"
    if not takeover:
        raise SocketPathError(
            errno.EADDRINUSE,
            f"{path} is served by a running process ({who}) and socket_takeover is false; "
            "stop it first or set another listen path",
        )
    me = os.geteuid()
    if state.owner_uid != me:
        raise SocketPathError(
            errno.EADDRINUSE,
            f"{path} is served by a process of another user ({who}; this sidecar runs as "
            f"uid {me}); refusing to take it over -- stop it or set another listen path",
        )


def _or_unknown(value: int | None) -> str:
    return "unknown" if value is None else str(value)


def check_folder(folder: str) -> bool:
    """Create `folder` (mode `FOLDER_MODE`) if missing, else check that no other user can
    write to it. Returns True when it is shared but sticky (group/world-writable with the
    sticky bit, like /tmp); raises `SocketPathError` naming the folder when it is unsafe."""
    created = False
    try:
        parent = os.path.dirname(folder.rstrip("/")) or "/"
        os.makedirs(parent, exist_ok=True)
        os.mkdir(folder, FOLDER_MODE)
        created = True
    except FileExistsError:
        pass
    except OSError as exc:
        raise SocketPathError(
            exc.errno, f"{folder}: cannot create it: {exc.strerror or exc}"
        ) from exc
    if created:
        try:
            os.chmod(folder, FOLDER_MODE)  # mkdir's mode went through the umask
        except OSError as exc:
            raise SocketPathError(
                exc.errno, f"{folder}: cannot set its mode: {exc.strerror or exc}"
            ) from exc
    try:
        st = os.stat(folder)
    except OSError as exc:
        raise SocketPathError(
            exc.errno, f"{folder}: cannot check it: {exc.strerror or exc}"
        ) from exc
    if not stat.S_ISDIR(st.st_mode):
        raise SocketPathError(errno.ENOTDIR, f"{folder} is not a directory")
    mode = stat.S_IMODE(st.st_mode)
    me = os.geteuid()
    if st.st_uid not in (me, 0):
        raise SocketPathError(
            errno.EPERM,
            f"refusing socket folder {folder}: owned by uid {st.st_uid}, neither this "
            f"sidecar's (uid {me}) nor root; its owner could replace the socket",
        )
    if mode & _WRITABLE_BY_OTHERS and not mode & stat.S_ISVTX:
        raise SocketPathError(
            errno.EPERM,
            f"refusing socket folder {folder}: mode {mode:04o} lets other users replace the "
            "socket (writable by group or others without the sticky bit); use a folder only "
            "the sidecar's user can write to, e.g. mode 0750",
        )
    return bool(mode & _WRITABLE_BY_OTHERS)


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """umask 077 for the duration (process-wide): a socket bound meanwhile starts out
    reachable by its owner only, whatever the umask the sidecar was started with."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


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

    def __init__(self, path: str, takeover: bool = True) -> None:
        self.path = path
        self.folder = os.path.dirname(path) or "/"
        self.temp_path = temp_path_beside(path)
        #: Take over a live socket of this uid (False: refuse to start while one answers).
        self.takeover = takeover
        #: The folder is writable by others but sticky (set by `prepare`): worth a warning.
        self.shared_folder = False
        self._identity: tuple[int, int] | None = None

    def prepare(self) -> PathState:
        """Check the folder (creating it) and the path before binding; raises
        `SocketPathError` if the folder is unsafe, something other than a socket is at the
        path, or a live socket there may not be taken over (see `admit`)."""
        self.shared_folder = check_folder(self.folder)
        state = inspect(self.path)
        admit(self.path, state, self.takeover)
        return state

    def publish(self) -> PathState:
        """Rename the bound socket over the path; returns what was there just before.

        Raises `SocketPathError` (and removes the temporary socket) when something other
        than a socket, or a live socket that may not be taken over, appeared at the path
        since `prepare`. The socket gets `SOCKET_MODE` before it is renamed."""
        with _folder_lock(self.folder):
            try:
                before = inspect(self.path)
                admit(self.path, before, self.takeover)
                os.chmod(self.temp_path, SOCKET_MODE)
                st = os.stat(self.temp_path)
                os.rename(self.temp_path, self.path)
            except OSError as exc:
                self.discard_temp()
                if isinstance(exc, SocketPathError):
                    raise
                raise SocketPathError(
                    exc.errno, f"{self.path}: cannot publish: {exc.strerror or exc}"
                ) from exc
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

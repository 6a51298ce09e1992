"""Who answers at the sidecar's unix socket: checked before the plugin sends it anything.

`check_peer(path, expected_uid)` looks at the path without following a symbolic link
(`lstat`: the last component must itself be a socket; folders above it may be links, such
as /var/run -> /run), connects a plain AF_UNIX socket to it, reads the listener's
credentials from the kernel (SO_PEERCRED) and closes it again without writing a byte. The
result is a value, `PeerCheck`:

- TRUSTED: a socket whose listener runs as `expected_uid`;
- UNREACHABLE: nothing listens (no file, ECONNREFUSED, permission denied, no answer in
  time) -- the sidecar is down or misconfigured, the usual fail-open case;
- UNTRUSTED: a socket served by another uid, or something that is not a socket (a symbolic
  link included: point ``sidecar.address`` at the socket itself) -- nothing may be sent.

Why a symbolic link is refused rather than followed: its target can be changed by whoever
owns the link's folder between this check and gRPC's own connect, and a sidecar never
publishes one (it renames a socket over the path).

Not guaranteed: the check and gRPC's connect are two separate connections to the same
path, so a process able to replace what is at the path in between (a few microseconds to
milliseconds) could still be reached by gRPC. Only a user who can write to the socket's
folder can do that; the sidecar refuses a folder other users can write to (without the
sticky bit) and creates its default folder 0750, which closes the window for everyone but
the sidecar's own user and root. In a sticky world-writable folder (/tmp) another user
cannot replace a live socket they do not own, but can take the path while it is free.
SO_PEERCRED names the process that called listen(); a listener that passed its socket to
another process is still judged by the first one. A pid from another pid namespace is 0
(shown as unknown).
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import struct
from dataclasses import dataclass
from enum import Enum

_PEERCRED = struct.Struct("3i")  # pid, uid, gid


class Verdict(Enum):
    TRUSTED = "trusted"
    UNREACHABLE = "unreachable"
    UNTRUSTED = "untrusted"


@dataclass(frozen=True, slots=True)
class PeerCheck:
    """What `check_peer` found; `reason` is one line naming the path (empty if TRUSTED)."""

    verdict: Verdict
    reason: str = ""
    pid: int | None = None
    uid: int | None = None
    #: What was at the path, when there was something (`file_identity`).
    identity: tuple[int, ...] | None = None

    @property
    def trusted(self) -> bool:
        return self.verdict is Verdict.TRUSTED


def expected_uid(configured: int | None) -> int:
    """The uid the sidecar must run as: `configured`, or this process's effective uid."""
    return os.geteuid() if configured is None else configured


def check_peer(path: str, expected: int, timeout_s: float = 0.05) -> PeerCheck:
    """Check the listener at unix socket `path` without sending it anything (see module)."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return PeerCheck(Verdict.UNREACHABLE, f"sidecar socket {path}: {exc.strerror}")
    identity = file_identity(st)
    if stat.S_ISLNK(st.st_mode):
        return PeerCheck(
            Verdict.UNTRUSTED,
            f"sidecar socket {path} is a symbolic link, not a socket; set sidecar.address "
            "to the socket itself",
            identity=identity,
        )
    if not stat.S_ISSOCK(st.st_mode):
        return PeerCheck(
            Verdict.UNTRUSTED, f"sidecar socket {path} is not a socket", identity=identity
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(timeout_s)
        try:
            probe.connect(path)
        except TimeoutError:
            return PeerCheck(Verdict.UNREACHABLE, f"sidecar socket {path}: no answer in time")
        except OSError as exc:
            reason = exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
            return PeerCheck(Verdict.UNREACHABLE, f"sidecar socket {path}: {reason}")
        try:
            raw = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        except OSError as exc:
            return PeerCheck(
                Verdict.UNTRUSTED,
                f"sidecar socket {path}: the kernel did not name its listener ({exc.strerror})",
                identity=identity,
            )
    finally:
        probe.close()
    pid, uid, _gid = _PEERCRED.unpack(raw)
    if uid != expected:
        shown = pid or "unknown"
        return PeerCheck(
            Verdict.UNTRUSTED,
            f"sidecar socket {path} is served by pid {shown} uid {uid}, not by the expected "
            f"uid {expected} (sidecar.uid); nothing was sent to it",
            pid or None,
            uid,
            identity,
        )
    return PeerCheck(Verdict.TRUSTED, "", pid or None, uid, identity)


def file_identity(st: os.stat_result) -> tuple[int, ...]:
    """What tells one file at a path from the next: device and inode, plus owner and change
    time, since a freed inode number is soon given to the next file created (a socket
    re-created by another user in the same folder may get the number of the one removed)."""
    return (st.st_dev, st.st_ino, st.st_uid, st.st_ctime_ns)


def same_file(path: str, found: PeerCheck) -> bool:
    """Whether `path` still names what `found` looked at (one lstat, nothing connected)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return found.identity == file_identity(st)

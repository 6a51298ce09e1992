"""The sidecar's socket against other local users: its folder, its mode, whose live socket
it may take over (`sidecar.rpc.unix_socket`, `sidecar.lifecycle`, `create_server`)."""

from __future__ import annotations

import logging
import os
import socket
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sidecar import lifecycle
from sidecar.app import build_engine, max_message_bytes
from sidecar.config import DEFAULT_LISTEN, SidecarConfig
from sidecar.core.clock import SystemClock
from sidecar.core.observer import RecordingObserver
from sidecar.rpc.server import create_server, start_serving
from sidecar.rpc.unix_socket import OwnedSocket, PathKind, SocketPathError
from tests.other_user import OTHER_UID, Impostor, connect_as_other_user, needs_root, shared_folder

CONFIG = SidecarConfig(memory_max_bytes=8 * 1024 * 1024)


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def listening(path: str | Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen()
    return s


def mode_of(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_default_socket_is_in_a_folder_of_its_own() -> None:
    assert DEFAULT_LISTEN == "unix:/run/strata/sidecar.sock"


def test_a_missing_folder_is_created_0750_whatever_the_umask(short_tmp: Path) -> None:
    path = short_tmp / "run" / "strata" / "sidecar.sock"
    with umask(0):
        OwnedSocket(str(path)).prepare()
    assert mode_of(path.parent) == 0o750


@pytest.mark.parametrize("mode", [0o770, 0o777, 0o757, 0o2770])
def test_a_folder_others_can_write_to_without_the_sticky_bit_is_refused(
    short_tmp: Path, mode: int
) -> None:
    folder = short_tmp / "open"
    folder.mkdir()
    os.chmod(folder, mode)
    with pytest.raises(SocketPathError, match=f"refusing socket folder {folder}: mode") as info:
        lifecycle.check_listen_path(f"unix:{folder}/sidecar.sock")
    assert "\n" not in str(info.value)
    assert os.listdir(folder) == []


def test_a_sticky_world_writable_folder_starts_with_a_warning(
    short_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = short_tmp / "sticky"
    folder.mkdir()
    os.chmod(folder, 0o1777)
    with caplog.at_level(logging.WARNING, logger="strata.sidecar"):
        state = lifecycle.check_listen_path(f"unix:{folder}/sidecar.sock")
    assert state is not None and state.kind is PathKind.MISSING
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert str(folder) in warning.getMessage()
    assert "another local user can take the socket path" in warning.getMessage()


def test_a_private_folder_starts_without_a_warning(
    short_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="strata.sidecar"):
        lifecycle.check_listen_path(f"unix:{short_tmp}/sidecar.sock")
    assert not caplog.records


@needs_root
def test_a_folder_owned_by_another_user_is_refused(short_tmp: Path) -> None:
    folder = short_tmp / "theirs"
    folder.mkdir(mode=0o755)
    os.chown(folder, OTHER_UID, OTHER_UID)
    with pytest.raises(SocketPathError, match=f"owned by uid {OTHER_UID}"):
        OwnedSocket(str(folder / "sidecar.sock")).prepare()


def test_a_symbolic_link_at_the_path_is_refused_and_kept(short_tmp: Path) -> None:
    target = short_tmp / "elsewhere.sock"
    path = short_tmp / "sidecar.sock"
    path.symlink_to(target)
    with pytest.raises(SocketPathError, match="symbolic link"):
        OwnedSocket(str(path)).prepare()
    assert path.is_symlink()


def test_takeover_off_refuses_even_a_sidecar_of_the_same_uid(short_tmp: Path) -> None:
    path = short_tmp / "sidecar.sock"
    with listening(path):
        with pytest.raises(SocketPathError, match="socket_takeover is false") as info:
            lifecycle.check_listen_path(f"unix:{path}", takeover=False)
        assert f"pid {os.getpid()}" in str(info.value)
        owned = OwnedSocket(str(path), takeover=False)
        with (
            listening(owned.temp_path),
            pytest.raises(SocketPathError, match="socket_takeover is false"),
        ):
            owned.publish()
        assert not os.path.exists(owned.temp_path)


def test_takeover_off_still_replaces_a_dead_socket(short_tmp: Path) -> None:
    path = short_tmp / "sidecar.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()
    owned = OwnedSocket(str(path), takeover=False)
    assert owned.prepare().kind is PathKind.STALE
    with listening(owned.temp_path):
        assert owned.publish().kind is PathKind.STALE


@needs_root
def test_a_dead_socket_of_another_uid_is_kept_and_refused() -> None:
    with shared_folder() as folder:
        path = folder / "sidecar.sock"
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(path))
        s.close()
        os.chown(path, OTHER_UID, OTHER_UID)
        inode = os.lstat(path).st_ino
        with pytest.raises(SocketPathError) as info:
            lifecycle.check_listen_path(f"unix:{path}")
        message = str(info.value)
        assert f"uid {OTHER_UID}" in message and str(path) in message and "\n" not in message
        assert os.lstat(path).st_ino == inode


@needs_root
def test_a_live_socket_of_another_uid_is_never_taken_over() -> None:
    with shared_folder() as folder:
        path = folder / "sidecar.sock"
        with Impostor(path) as impostor:
            inode = os.lstat(path).st_ino
            with pytest.raises(SocketPathError) as info:
                lifecycle.check_listen_path(f"unix:{path}")
            message = str(info.value)
            assert str(path) in message and "\n" not in message
            assert f"pid {impostor.pid}" in message and f"uid {OTHER_UID}" in message
            # and at the rename, should it appear between the checks
            owned = OwnedSocket(str(path))
            with (
                listening(owned.temp_path),
                pytest.raises(SocketPathError, match=f"uid {OTHER_UID}"),
            ):
                owned.publish()
            assert os.lstat(path).st_ino == inode
            assert not os.path.exists(owned.temp_path)


async def test_the_socket_is_0660_under_umask_000_and_never_wider(short_tmp: Path) -> None:
    path = short_tmp / "sidecar.sock"
    engine = build_engine(CONFIG, SystemClock(), RecordingObserver())
    with umask(0):
        running = create_server(engine, f"unix:{path}", max_message_bytes(CONFIG))
        try:
            assert running.socket is not None
            temp = running.socket.temp_path
            assert mode_of(temp) & 0o077 == 0  # bound, not yet published: owner only
            await start_serving(running)
            assert mode_of(path) == 0o660
        finally:
            await running.server.stop(0)
            if running.socket is not None:
                running.socket.release()


@needs_root
async def test_another_user_cannot_connect_to_the_sidecar(short_tmp: Path) -> None:
    os.chmod(short_tmp, 0o755)  # the folder lets them through: only the socket's mode stops them
    path = short_tmp / "sidecar.sock"
    engine = build_engine(CONFIG, SystemClock(), RecordingObserver())
    with umask(0):
        running = create_server(engine, f"unix:{path}", max_message_bytes(CONFIG))
    try:
        await start_serving(running)

        assert connect_as_other_user(path) == "EACCES"
    finally:
        await running.server.stop(0)
        if running.socket is not None:
            running.socket.release()

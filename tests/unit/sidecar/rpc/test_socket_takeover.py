"""`sidecar.rpc.unix_socket`: what is at a socket path, taking it over, letting it go."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.rpc.unix_socket import (
    MAX_PATH_BYTES,
    OwnedSocket,
    Ownership,
    PathKind,
    SocketPathError,
    inspect,
    temp_path_beside,
)


def listening(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen()
    return s


@pytest.fixture
def path(short_tmp: Path) -> str:
    return str(short_tmp / "s.sock")


@pytest.fixture
def owned(path: str) -> Iterator[OwnedSocket]:
    """An OwnedSocket whose temporary socket is bound and listening (as grpc would)."""
    o = OwnedSocket(path)
    s = listening(o.temp_path)
    yield o
    s.close()


def test_nothing_there_is_missing(path: str) -> None:
    assert inspect(path).kind is PathKind.MISSING


def test_a_socket_nobody_answers_on_is_stale(path: str) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)  # bound, never listening: connect is refused, as after kill -9
    s.close()
    assert inspect(path).kind is PathKind.STALE


def test_a_live_socket_names_its_owner(path: str) -> None:
    with listening(path):
        state = inspect(path)
    assert state.kind is PathKind.LIVE
    assert state.owner_pid == os.getpid()


@pytest.mark.parametrize("make", ["file", "dir", "fifo"])
def test_anything_but_a_socket_is_an_error_naming_the_path(path: str, make: str) -> None:
    if make == "file":
        Path(path).write_text("data")
    elif make == "dir":
        os.mkdir(path)
    else:
        os.mkfifo(path)
    with pytest.raises(SocketPathError, match=path):
        OwnedSocket(path).prepare()
    assert os.path.lexists(path)


def test_publish_takes_a_live_socket_over_and_reports_it(path: str, owned: OwnedSocket) -> None:
    with listening(path):
        old = os.stat(path).st_ino
        before = owned.publish()
        assert before.kind is PathKind.LIVE and before.owner_pid == os.getpid()
        assert os.stat(path).st_ino != old
        assert not os.path.exists(owned.temp_path)
        assert owned.state() is Ownership.OURS


def test_publish_refuses_a_file_that_appeared_and_cleans_up(path: str, owned: OwnedSocket) -> None:
    Path(path).write_text("data")
    with pytest.raises(SocketPathError, match="not a socket"):
        owned.publish()
    assert Path(path).read_text() == "data"
    assert not os.path.exists(owned.temp_path)


def test_release_removes_only_our_own_socket(path: str, short_tmp: Path) -> None:
    old = OwnedSocket(path)
    with listening(old.temp_path):
        old.publish()
        new = OwnedSocket(path)
        with listening(new.temp_path):
            new.publish()  # the old one lost the path
            assert old.state() is Ownership.REPLACED
            assert old.release() is False
            assert new.state() is Ownership.OURS  # still there
            assert new.release() is True
    assert not os.path.exists(path)
    assert os.listdir(short_tmp) == []


def test_a_removed_path_is_missing_not_replaced(path: str, owned: OwnedSocket) -> None:
    owned.publish()
    os.unlink(path)
    assert owned.state() is Ownership.MISSING
    assert owned.release() is False


def test_release_before_publish_only_removes_the_temporary_socket(
    path: str, owned: OwnedSocket, short_tmp: Path
) -> None:
    assert owned.release() is False
    assert os.listdir(short_tmp) == []


def test_temporary_names_are_unique_short_and_beside(short_tmp: Path) -> None:
    path = str(short_tmp / "s.sock")
    names = {temp_path_beside(path) for _ in range(50)}
    assert len(names) == 50
    assert all(os.path.dirname(n) == str(short_tmp) for n in names)
    long_path = "/" + "d" * (MAX_PATH_BYTES - 12) + "/s.sock"
    assert len(temp_path_beside(long_path).encode()) <= MAX_PATH_BYTES
    with pytest.raises(SocketPathError, match="too long"):
        temp_path_beside("/" + "d" * (MAX_PATH_BYTES - 2) + "/s")

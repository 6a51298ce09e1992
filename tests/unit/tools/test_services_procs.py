"""The supervisor's /proc readers and recipe selection, on made-up input where they are pure."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tools.services import SERVER_NAMES, Record, ServiceError
from tools.services.__main__ import split_list
from tools.services.procs import alive, is_ours, listening_inodes, parse_stat, port_free, program_of
from tools.services.redis import SERVER as REDIS
from tools.services.supervisor import env_of, select

# Two listeners (state 0A) and one established connection, as in /proc/net/tcp.
TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1
   1: 0100007F:2328 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222 1
   2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 333 1
"""


def test_parse_stat_reads_state_and_start_time_after_a_command_with_spaces() -> None:
    fields = ["S", *[str(n) for n in range(4, 22)], "987654", "0"]
    stat = "4242 (redis-server (x) y) " + " ".join(fields)
    assert parse_stat(stat) == ("S", 987654)


def test_program_is_the_base_name_of_the_first_word() -> None:
    assert program_of(b"/usr/bin/redis-server 127.0.0.1:6000\0\0") == "redis-server"
    assert program_of(b"/usr/lib/postgresql/16/bin/postgres\0-D\0/data\0") == "postgres"
    assert program_of(b"") == ""


def test_listening_inodes_are_those_of_listeners_on_the_port_only() -> None:
    assert listening_inodes([TCP], 0x1F90) == {"socket:[111]"}
    assert listening_inodes([TCP, TCP], 0x2328) == {"socket:[222]"}
    assert listening_inodes([TCP], 1) == set()


def test_alive_is_false_for_placeholder_pids_and_true_for_this_process() -> None:
    assert not alive(-1)
    assert not alive(0)
    assert alive(os.getpid())


def test_a_record_is_ours_only_with_the_same_program_and_start_time() -> None:
    me = Record(pid=os.getpid(), port=1, start_ticks=-1)
    assert not is_ours(REDIS, me)  # this process is python, and the start time differs


def test_select_keeps_start_order_and_rejects_unknown_names() -> None:
    assert [s.name for s in select(None)] == list(SERVER_NAMES)
    assert [s.name for s in select(["tansu", "redis"])] == ["redis", "tansu"]
    with pytest.raises(ServiceError, match="unknown server"):
        select(["redis", "mysql"])


def test_env_lines_follow_start_order_whatever_the_state_order(tmp_path: Path) -> None:
    state = {
        "tansu": Record(pid=1, port=3000, start_ticks=1),
        "redis": Record(pid=2, port=3001, start_ticks=1),
    }
    assert list(env_of(tmp_path, state).items()) == [
        ("STRATA_TEST_REDIS_URL", "redis://127.0.0.1:3001/0"),
        ("STRATA_TEST_KAFKA_BOOTSTRAP", "127.0.0.1:3000"),
    ]


def test_comma_lists_drop_blanks() -> None:
    assert split_list(" redis, ,tansu,") == ["redis", "tansu"]
    assert split_list("") == []
    assert split_list(None) is None


def test_port_free_ignores_time_wait_but_not_a_listener() -> None:
    """A port whose server closed a connection first (TIME_WAIT on the server side, ~60 s)
    can be bound by the next server, which sets SO_REUSEADDR; one with a listener cannot."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    assert not port_free(f"127.0.0.1:{port}")
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    conn.close()  # the server side closes first: its end goes to TIME_WAIT
    client.recv(1)
    client.close()
    server.close()
    assert port_free(f"127.0.0.1:{port}")

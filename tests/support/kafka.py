"""A private broker for tests that stop and restart one (never the shared one of
`make services-up`): Tansu on a free loopback port.

Memory storage: a restart loses every topic and restarts offsets at 0 (a real Kafka keeps
its log), so a test that restarts it creates its topics again and must not depend on
offsets consumed before the stop.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from tools.services.procs import free_port
from tools.services.tansu import tansu_binary

HOST = "127.0.0.1"

__all__ = ["PrivateTansu", "private_tansu"]


class PrivateTansu:
    """A Tansu of this test on a free loopback port (see the module docstring)."""

    def __init__(self, workdir: str | Path) -> None:
        self.port = free_port()
        self.bootstrap = f"{HOST}:{self.port}"
        self._log = open(f"{workdir}/tansu.log", "ab")  # noqa: SIM115 - closed in close()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        url = f"tcp://{HOST}:{self.port}"
        argv = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url",
                url, "--storage-engine", "memory://tansu/"]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=1)
                return
            except Exception:
                assert time.monotonic() < deadline, "the private broker did not answer"
                time.sleep(0.05)

    def pause(self) -> None:
        """SIGSTOP: the broker keeps its state but answers nothing (an outage that loses
        nothing, unlike `stop`)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)  # a paused broker dies as well
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def close(self) -> None:
        self.stop()
        self._log.close()


@pytest.fixture
def private_tansu(tmp_path: Path) -> Iterator[PrivateTansu]:
    """A `PrivateTansu`, not started; stopped at the end of the test."""
    broker = PrivateTansu(tmp_path)
    try:
        yield broker
    finally:
        broker.close()

"""`tools.stack.SidecarProcess`, the one launcher of run, tests and benchmarks: it returns
once its own process serves, stops it, and a start-up failure carries the sidecar's stderr."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.stack import SidecarProcess, SidecarStartError, free_port, probe, socket_owner

pytestmark = pytest.mark.e2e


def test_start_serves_then_stop_ends_it_and_keeps_its_output(
    short_tmp: Path, sidecar_env: dict[str, str]
) -> None:
    sidecar = SidecarProcess(
        f"unix:{short_tmp}/s.sock", env=sidecar_env, metrics_listen=f"127.0.0.1:{free_port()}"
    )
    with sidecar:
        assert sidecar.serving()
        assert sidecar.socket_path is not None
        assert socket_owner(sidecar.socket_path) == sidecar.pid
        assert probe(sidecar.address)
    assert sidecar.returncode == 0  # SIGTERM: a clean stop
    assert not sidecar.serving()
    assert '"message":"sidecar stopped"' in sidecar.output().stdout


def test_a_second_start_on_the_path_waits_for_the_new_process(
    short_tmp: Path, sidecar_env: dict[str, str]
) -> None:
    address = f"unix:{short_tmp}/s.sock"
    first = SidecarProcess(address, env=sidecar_env, metrics_listen="off").start()
    try:
        second = SidecarProcess(address, env=sidecar_env, metrics_listen="off").start()
        try:
            assert second.serving()  # the takeover happened before start returned
            assert not first.serving()
        finally:
            second.stop()
    finally:
        first.stop()


def test_a_start_up_failure_raises_with_the_exit_code_and_stderr(
    short_tmp: Path, sidecar_env: dict[str, str]
) -> None:
    sidecar = SidecarProcess(
        f"unix:{short_tmp}/s.sock",
        env=sidecar_env,
        metrics_listen="off",
        settings={"memory_max_bytes": "lots"},
    )
    with pytest.raises(SidecarStartError) as info:
        sidecar.start()
    assert info.value.returncode == sidecar.returncode != 0
    assert "memory_max_bytes" in info.value.stderr
    assert "memory_max_bytes" in str(info.value)  # the message shows the output's tail
    assert not sidecar.alive()


def test_expect_refusal_returns_the_error_of_a_sidecar_that_must_not_start(
    short_tmp: Path, sidecar_env: dict[str, str]
) -> None:
    path = short_tmp / "s.sock"
    path.write_text("not a socket\n")
    refused = SidecarProcess(f"unix:{path}", env=sidecar_env, metrics_listen="off").expect_refusal()
    assert refused.returncode == 1
    assert "not a socket" in refused.stderr

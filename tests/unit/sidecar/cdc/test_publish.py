"""The publisher with no broker: it never crashes, backs off, and gives up only when told."""

from __future__ import annotations

import threading
import time

import pytest

from sidecar.cdc import publish
from sidecar.cdc.publish import BrokerUnavailableError, Outgoing, Publisher, PublisherConfig
from tools.services.procs import free_port


def nowhere() -> str:
    return f"127.0.0.1:{free_port()}"  # nothing listens there: connections are refused


def test_the_wait_doubles_up_to_the_cap() -> None:
    p = Publisher(PublisherConfig("k:1", "t", retry_interval_s=0.5, max_retry_interval_s=3))
    try:
        assert [p.retry_wait_s(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
        assert p.retry_wait_s(10_000) == 3.0
    finally:
        p.close()


@pytest.mark.parametrize("error", [TimeoutError(), RuntimeError("no broker"), OSError("x")])
def test_a_failing_topic_check_is_logged_never_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, error: Exception
) -> None:
    def fail(*_args: object, **_kwargs: object) -> bool:
        raise error

    monkeypatch.setattr(publish, "ensure_topic", fail)
    stop = threading.Event()
    config = PublisherConfig(nowhere(), "t", send_timeout_s=0.3, retry_interval_s=0.05)
    p = Publisher(config)
    timer = threading.Timer(1.0, stop.set)
    timer.start()
    try:
        assert p.deliver([Outgoing("t", None, b"{}")], stop) is False  # stopped, not crashed
    finally:
        timer.cancel()
        p.close()
    assert p.failed_attempts >= 1 and p.delivered == 0
    assert "cannot check topic t" in caplog.text and type(error).__name__ in caplog.text


def test_give_up_raises_after_the_bound_with_no_broker() -> None:
    config = PublisherConfig(
        nowhere(), "t", send_timeout_s=0.5, retry_interval_s=0.05, give_up_s=0.5
    )
    p = Publisher(config)
    started = time.monotonic()
    try:
        with pytest.raises(
            BrokerUnavailableError, match=r"2 of 2 messages not delivered to 127\.0\.0\.1:"
        ):
            p.deliver([Outgoing("t", None, b"{}"), Outgoing("t", None, b"{}")], threading.Event())
    finally:
        p.close()
    assert time.monotonic() - started < 30  # generous: one topic check + one send attempt
    assert p.delivered == 0

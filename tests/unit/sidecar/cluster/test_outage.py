"""Fail-open bookkeeping: back-off window, reporting every failure, throttled logging."""

from __future__ import annotations

import logging

import pytest

from sidecar.cluster.outage import Outage
from sidecar.core.clock import ManualClock
from sidecar.core.errors import TierError
from sidecar.core.observer import RecordingObserver


def test_backs_off_reports_every_failure_and_logs_at_most_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    obs = RecordingObserver()
    outage = Outage(
        clock,
        obs,
        label="redis_x",
        what="redis x",
        consequence="falling back",
        action="x_error",
        logger=logging.getLogger("test.outage"),
        retry_after_s=1.0,
        log_every_s=5.0,
    )
    assert not outage.is_down()
    with caplog.at_level(logging.WARNING, logger="test.outage"):
        err = outage.failed("get", ConnectionError("refused"))
        assert isinstance(err, TierError) and "redis x get failed" in str(err)
        assert outage.is_down()
        clock.advance(1000)
        assert not outage.is_down()
        for _ in range(3):
            outage.failed("get", ConnectionError("refused"))
        clock.advance(5000)
        outage.failed("set", TimeoutError("slow"))
    assert obs.events.count(("tier_error", "redis_x", "get")) == 4
    warnings = [r for r in caplog.records if r.name == "test.outage"]
    assert len(warnings) == 2  # the first failure, and the first after log_every_s
    assert warnings[1].__dict__["strata.suppressed"] == 3

"""Operator reports through kong.log (rate-limited) and restart-safe instance ids."""

from __future__ import annotations

from typing import Any

from kong_plugin.pluginserver.instances import ID_SPACE
from kong_plugin.report import Reporter
from kong_plugin.server import RestartSafePluginServer, first_instance_id


class FakeLog:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda text: self.lines.append((level, text))


class FakeKong:
    def __init__(self) -> None:
        self.log = FakeLog()


def test_reports_reach_kong_log_once_per_interval_with_a_suppressed_count() -> None:
    now = [100.0]
    reporter = Reporter(interval_s=30.0, clock=lambda: now[0])
    kong = FakeKong()
    reporter.report(kong, "err", "config", "bad config")
    reporter.report(kong, "err", "config", "bad config")
    reporter.report(kong, "warn", "sidecar", "sidecar down")
    assert kong.log.lines == [
        ("err", "[strata-cache] bad config"),
        ("warn", "[strata-cache] sidecar down"),
    ]
    now[0] += 31
    reporter.report(kong, "err", "config", "bad config")
    assert kong.log.lines[-1] == ("err", "[strata-cache] bad config (1 similar reports suppressed)")


def test_a_failing_kong_log_does_not_raise() -> None:
    class Broken:
        @property
        def log(self) -> Any:
            raise RuntimeError("no PDK here")

    Reporter().report(Broken(), "err", "x", "message")


def test_instance_ids_start_at_a_random_large_offset() -> None:
    firsts = {first_instance_id() for _ in range(50)}
    assert len(firsts) > 45  # random, not 0 every time
    assert all(2**20 <= i < 2**20 + ID_SPACE < 2**53 for i in firsts)
    server = RestartSafePluginServer()
    assert server.instance_id >= 2**20

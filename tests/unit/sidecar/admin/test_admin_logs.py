"""The admin API's log lines: an INFO audit line per purge, DEBUG for reads and port
probes, refusals thinned to one line per kind every few seconds (metrics count all)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

from sidecar.admin.audit import AdminLog
from sidecar.admin.lograte import LogGate
from tests.unit.sidecar.admin.conftest import TOKEN, Admin


def _lines(caplog: pytest.LogCaptureFixture, action: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event.action", "") == action]


def test_the_gate_lets_one_line_per_kind_through_per_interval() -> None:
    now = [100.0]
    gate = LogGate(5.0, clock=lambda: now[0])
    assert gate.allow("unauthorized") == 0
    assert [gate.allow("unauthorized") for _ in range(3)] == [None, None, None]
    assert gate.allow("timeout") == 0  # kinds are separate
    now[0] += 5.0
    assert gate.allow("unauthorized") == 3  # the line carries how many were held back
    assert gate.allow("unauthorized") is None
    now[0] += 60.0
    assert gate.allow("unauthorized") == 1


@dataclass
class _Asker:
    peer: str = "127.0.0.1:5555"
    route: str = "purge"
    method: str = "POST"
    path: str = "/purge"


def test_refusal_lines_carry_the_suppressed_count(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "strata.admin")
    now = [0.0]
    audit = AdminLog(LogGate(5.0, clock=lambda: now[0]))
    for _ in range(1000):
        audit.refused("unauthorized", logging.WARNING, "admin request refused", _Asker())
    now[0] += 6.0
    audit.refused("unauthorized", logging.WARNING, "admin request refused", _Asker())
    lines = _lines(caplog, "admin_refused")
    assert [getattr(r, "strata.suppressed") for r in lines] == [0, 999]
    assert getattr(lines[0], "client.address") == "127.0.0.1:5555"


async def test_a_flood_of_wrong_tokens_is_one_line_but_every_one_is_counted(
    admin: Admin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "strata.admin")
    for i in range(30):
        status, _, _ = await admin.request(
            "DELETE", "/proxy-cache", headers=f"Authorization: Bearer guess-{i}\r\n"
        )
        assert status == 401
    assert admin.observer.counts[("proxy_cache", "unauthorized")] == 30
    refused = _lines(caplog, "admin_refused")
    assert len(refused) == 1
    assert refused[0].levelno == logging.WARNING
    assert "guess-" not in caplog.text


async def test_a_connection_closed_before_the_request_line_is_debug_only(
    admin: Admin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "strata.admin")
    for _ in range(5):
        await admin.send(b"")
    assert admin.observer.counts[("none", "bad_request")] == 5
    probes = _lines(caplog, "admin_no_request")
    assert len(probes) == 5
    assert all(r.levelno == logging.DEBUG for r in probes)
    assert [r for r in caplog.records if r.levelno >= logging.INFO] == []


async def test_every_purge_has_an_info_audit_line_without_the_token(
    admin: Admin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "strata.admin")
    for _ in range(2):  # not thinned: every purge is audited
        status, _, _ = await admin.request("POST", "/purge?tag=products:42&soft=true&id=rel-1")
        assert status == 200
    status, _, _ = await admin.request("DELETE", "/proxy-cache")
    assert status == 204
    purges = _lines(caplog, "admin_purge")
    assert [r.levelno for r in purges] == [logging.INFO] * 3
    first, second, flush = purges
    assert getattr(first, "client.address").startswith("127.0.0.1:")
    assert getattr(first, "http.request.method") == "POST"
    assert getattr(first, "strata.admin_route") == "purge"
    assert getattr(first, "strata.event_id") == "rel-1"
    assert (getattr(first, "strata.dropped"), getattr(first, "strata.queued")) == (3, True)
    assert (getattr(first, "strata.soft"), getattr(first, "strata.duplicate")) == (True, False)
    assert getattr(second, "strata.duplicate") is True
    assert "nothing purged again" in second.getMessage()
    assert getattr(flush, "strata.admin_route") == "proxy_cache"
    assert getattr(flush, "strata.soft") is False
    assert TOKEN not in caplog.text


async def test_a_read_is_logged_at_debug(admin: Admin, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "strata.admin")
    status, _, _ = await admin.request("GET", "/proxy-cache/some-key")
    assert status == 404
    reads = _lines(caplog, "admin_read")
    assert [r.levelno for r in reads] == [logging.DEBUG]
    assert _lines(caplog, "admin_purge") == []

"""kong_plugin.outcome: the registry that hands each request's outcome to its subscribers."""

from __future__ import annotations

import logging

import pytest

from kong_plugin import outcome
from kong_plugin.outcome import Outcome


def _outcome(result: str = "Hit") -> Outcome:
    return Outcome(
        phase="access",
        result=result,
        detail="",
        method="GET",
        route_id="r1",
        consumer_id="",
        status=200,
        tier="memory",
        body_bytes=12,
        key="v2:k",
        started=1.0,
        elapsed_s=0.001,
    )


def test_every_subscriber_gets_each_outcome_in_order_until_unsubscribed() -> None:
    seen: list[tuple[str, str]] = []
    first = outcome.subscribe(lambda o: seen.append(("a", o.result)))
    second = outcome.subscribe(lambda o: seen.append(("b", o.result)))
    try:
        outcome.publish(_outcome("Hit"))
        first()
        first()  # idempotent
        outcome.publish(_outcome("Miss"))
    finally:
        second()
    outcome.publish(_outcome("Bypass"))
    assert seen == [("a", "Hit"), ("b", "Hit"), ("b", "Miss")]


def test_a_raising_subscriber_is_logged_once_and_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []

    def broken(_: Outcome) -> None:
        raise RuntimeError("boom")

    undo = [outcome.subscribe(broken), outcome.subscribe(lambda o: seen.append(o.result))]
    try:
        with caplog.at_level(logging.ERROR, logger="strata.plugin"):
            outcome.publish(_outcome("Hit"))
            outcome.publish(_outcome("Miss"))
    finally:
        for u in undo:
            u()
    assert seen == ["Hit", "Miss"]
    assert sum("outcome subscriber" in r.getMessage() for r in caplog.records) == 1
    assert broken not in outcome.subscribers()

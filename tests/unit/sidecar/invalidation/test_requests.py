"""The plugin's Invalidate as an event: checked as the engine checks it, then submitted."""

from __future__ import annotations

import pytest
from strata.v1 import cache_pb2 as pb

from sidecar.core.clock import ManualClock
from sidecar.core.errors import InvalidRequestError
from sidecar.core.limits import Limits
from sidecar.engine.engine import Engine
from sidecar.events import InvalidationEvent
from sidecar.invalidation import Invalidations, request_event
from sidecar.rpc.operations import Operations
from sidecar.tiers.memory import MemoryTier
from tests.support.purge_engine import FakePurgeEngine


@pytest.mark.parametrize(
    ("target", "value", "event"),
    [
        ("tag", "users", InvalidationEvent(tags=("users",))),
        ("route", "v1:rt:", InvalidationEvent(routes=("v1:rt:",))),
        ("key", b"v1:rt:GET:/a", InvalidationEvent(keys=("v1:rt:GET:/a",))),
        ("prefix", b"v1:rt:", InvalidationEvent(key_prefixes=("v1:rt:",))),
    ],
)
def test_each_target_becomes_its_event(
    target: str, value: str | bytes, event: InvalidationEvent
) -> None:
    assert request_event(target, value, Limits()) == event


@pytest.mark.parametrize(
    ("target", "value", "field", "reason"),
    [
        ("tag", "a b", "tag", "bad_tag"),
        ("route", "v1:a b:", "route", "bad_route"),
        ("key", b"", "key", "empty_key"),
        ("key", b"\xff", "key", "key_not_utf8"),
        ("prefix", b"a\nb", "prefix", "key_control_chars"),
        ("key", b"k" * 3000, "key", "key_too_long"),
    ],
)
def test_bad_targets_are_refused_as_the_engine_refuses_them(
    target: str, value: str | bytes, field: str, reason: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        request_event(target, value, Limits())
    assert (caught.value.field, caught.value.reason) == (field, reason)


def test_a_key_the_format_refuses_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        request_event("key", b"k" * 70_000, Limits(max_key_bytes=100_000))
    assert (caught.value.field, caught.value.reason) == ("key", "too_long")


async def test_invalidate_rpc_goes_through_submit(clock: ManualClock) -> None:
    engine = Engine([MemoryTier(1024**2, clock)], clock)
    purges = FakePurgeEngine(dropped=3)
    ops = Operations(engine, 10, Invalidations(purges, "n", clock))
    reply = await ops.invalidate(pb.InvalidateRequest(route="v1:rt:"))
    assert reply.dropped == 3
    assert purges.calls[0][:3] == ("purge_tags", ("route:v1:rt:",), False)
    await ops.invalidate(pb.InvalidateRequest(key=b"v1:rt:k"))
    await ops.invalidate(pb.InvalidateRequest(prefix=b"v1:rt:"))
    await ops.invalidate(pb.InvalidateRequest(tag="users"))
    assert purges.calls[1:] == [
        ("invalidate_key", b"v1:rt:k"),
        ("invalidate_prefix", b"v1:rt:"),
        ("purge_tags", ("users",), False, purges.calls[3][-1]),
    ]


async def test_a_refused_invalidate_is_counted_and_nothing_is_purged(clock: ManualClock) -> None:
    engine = Engine([MemoryTier(1024**2, clock)], clock)
    purges = FakePurgeEngine()
    ops = Operations(engine, 10, Invalidations(purges, "n", clock))
    with pytest.raises(InvalidRequestError, match="cannot name a route"):
        await ops.invalidate(pb.InvalidateRequest(route="v1:a b:"))
    with pytest.raises(InvalidRequestError, match="set one of"):
        await ops.invalidate(pb.InvalidateRequest())
    assert engine.counters.rejected_by_reason == {"bad_route": 1, "no_target": 1}
    assert purges.calls == []

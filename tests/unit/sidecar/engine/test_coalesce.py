"""`SingleFlight` and `LocalLeases` on their own (sidecar/engine/coalesce.py)."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.core.clock import ManualClock
from sidecar.engine.coalesce import LocalLeases, SingleFlight

# -- SingleFlight ----------------------------------------------------------------------------


async def test_concurrent_callers_of_one_key_share_one_call() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    calls = 0
    gate = asyncio.Event()

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return 42

    tasks = [asyncio.create_task(flight.do("k", fetch)) for _ in range(5)]
    await asyncio.sleep(0)
    assert len(flight) == 1
    gate.set()
    assert await asyncio.gather(*tasks) == [42] * 5
    assert calls == 1
    assert len(flight) == 0  # forgotten once done: the next call runs again
    assert await flight.do("k", fetch) == 42 and calls == 2


async def test_different_keys_do_not_share() -> None:
    flight: SingleFlight[str, str] = SingleFlight()

    async def echo(value: str) -> str:
        await asyncio.sleep(0)
        return value

    a, b = await asyncio.gather(
        flight.do("a", lambda: echo("a")), flight.do("b", lambda: echo("b"))
    )
    assert (a, b) == ("a", "b")


async def test_an_error_reaches_every_caller_and_is_not_kept() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    gate = asyncio.Event()

    async def boom() -> int:
        await gate.wait()
        raise ValueError("down")

    tasks = [asyncio.create_task(flight.do("k", boom)) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results)
    assert len(flight) == 0

    async def ok() -> int:
        return 1

    assert await flight.do("k", ok) == 1


async def test_a_follower_cancelled_does_not_cancel_the_leader() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    gate = asyncio.Event()

    async def slow() -> int:
        await gate.wait()
        return 7

    leader = asyncio.create_task(flight.do("k", slow))
    await asyncio.sleep(0)
    follower = asyncio.create_task(flight.do("k", slow))
    await asyncio.sleep(0)
    follower.cancel()
    with pytest.raises(asyncio.CancelledError):
        await follower
    gate.set()
    assert await leader == 7


# -- LocalLeases -----------------------------------------------------------------------------


@pytest.fixture
def leases(clock: ManualClock) -> LocalLeases:
    return LocalLeases(clock, ttl_ms=1_000)


async def test_one_holder_at_a_time_until_released(leases: LocalLeases) -> None:
    assert await leases.try_acquire(b"k")
    assert leases.is_held(b"k")
    assert not await leases.try_acquire(b"k")
    assert await leases.try_acquire(b"other")
    assert await leases.release(b"k") == 0
    assert not leases.is_held(b"k")
    assert await leases.try_acquire(b"k")
    assert await leases.release(b"nothing") == 0


async def test_waiters_are_woken_by_the_release_and_counted(leases: LocalLeases) -> None:
    assert await leases.try_acquire(b"k")
    waiters = [asyncio.create_task(leases.wait(b"k", 5.0)) for _ in range(3)]
    await asyncio.sleep(0)
    assert await leases.release(b"k") == 3
    assert await asyncio.gather(*waiters) == [True, True, True]


async def test_a_wait_times_out_or_finds_no_lease(leases: LocalLeases) -> None:
    assert not await leases.wait(b"k", 0.01)  # no lease: nothing to wait for
    assert await leases.try_acquire(b"k")
    assert not await leases.wait(b"k", 0.01)  # nobody released it in time


async def test_an_expired_lease_is_taken_over_and_its_waiters_woken(
    leases: LocalLeases, clock: ManualClock
) -> None:
    assert await leases.try_acquire(b"k")
    waiter = asyncio.create_task(leases.wait(b"k", 5.0))
    await asyncio.sleep(0)
    clock.advance(1_000)  # the lease's 1000 ms are over
    assert not leases.is_held(b"k")
    assert not await leases.wait(b"k", 0.01)  # an expired lease is not waited on
    assert await leases.try_acquire(b"k")  # a new holder; the old waiter is woken
    assert await waiter is True


async def test_sweep_forgets_expired_leases_only(leases: LocalLeases, clock: ManualClock) -> None:
    assert await leases.try_acquire(b"old")
    clock.advance(600)
    assert await leases.try_acquire(b"young")
    clock.advance(500)
    assert await leases.sweep() == 1
    assert len(leases) == 1 and leases.is_held(b"young")


async def test_wake_all_wakes_waiters_and_keeps_the_leases(leases: LocalLeases) -> None:
    assert await leases.try_acquire(b"a")
    assert await leases.try_acquire(b"b")
    waiters = [asyncio.create_task(leases.wait(k, 5.0)) for k in (b"a", b"a", b"b")]
    await asyncio.sleep(0)
    assert leases.wake_all() == 3
    assert await asyncio.gather(*waiters) == [True, True, True]
    assert leases.is_held(b"a") and leases.is_held(b"b")

"""The gRPC service against a real grpc.aio server on a temporary socket / port."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from strata.v1 import cache_pb2 as pb
from strata.v1 import cache_pb2_grpc as pb_grpc

from kong_plugin.client import SidecarClient, SidecarRejectedError, SidecarUnavailableError
from sidecar.app import build_engine, max_message_bytes
from sidecar.config import SidecarConfig
from sidecar.core.clock import SystemClock
from sidecar.core.observer import RecordingObserver
from sidecar.rpc.server import RunningServer, create_server, start_serving

CONFIG = SidecarConfig(max_body_bytes=64 * 1024, memory_max_bytes=8 * 1024 * 1024)


def entry(body: bytes = b'{"ok":true}', ttl_ms: int = 60_000) -> pb.Entry:
    return pb.Entry(
        status=200,
        headers=[
            pb.Header(name=b"content-type", value=b"application/json"),
            pb.Header(name=b"x-multi", value=b"1"),
            pb.Header(name=b"x-multi", value=b"2"),
        ],
        body=body,
        ttl_ms=ttl_ms,
        tags=["users"],
    )


async def start(listen: str) -> RunningServer:
    engine = build_engine(CONFIG, SystemClock(), RecordingObserver())
    running = create_server(engine, listen, max_message_bytes(CONFIG))
    await start_serving(running)  # started, SERVING, and published at its socket path
    return running


@pytest.fixture(params=["unix", "tcp"])
async def server(request: pytest.FixtureRequest, short_tmp: Path) -> AsyncIterator[RunningServer]:
    listen = f"unix:{short_tmp}/s.sock" if request.param == "unix" else "127.0.0.1:0"
    running = await start(listen)
    yield running
    await running.server.stop(0)


@pytest.fixture
async def stub(server: RunningServer) -> AsyncIterator[pb_grpc.CacheServiceStub]:
    async with grpc.aio.insecure_channel(server.address) as channel:
        yield pb_grpc.CacheServiceStub(channel)


async def test_store_lookup_invalidate_stats(stub: pb_grpc.CacheServiceStub) -> None:
    miss = await stub.Lookup(pb.LookupRequest(key=b"v1:r:1"))
    assert miss.outcome == pb.OUTCOME_MISS and not miss.HasField("entry")
    stored = await stub.Store(pb.StoreRequest(key=b"v1:r:1", entry=entry()))
    assert stored.result == pb.STORE_RESULT_STORED
    hit = await stub.Lookup(pb.LookupRequest(key=b"v1:r:1"))
    assert hit.outcome == pb.OUTCOME_HIT
    assert hit.tier == "memory"
    assert [(h.name, h.value) for h in hit.entry.headers] == [
        (b"content-type", b"application/json"),
        (b"x-multi", b"1"),
        (b"x-multi", b"2"),
    ]
    assert hit.entry.body == b'{"ok":true}'
    assert hit.entry.format_version == 1
    assert hit.entry.stored_at_ms > 0 and hit.now_ms >= hit.entry.stored_at_ms
    dropped = await stub.Invalidate(pb.InvalidateRequest(tag="users"))
    assert dropped.dropped == 1
    stats = await stub.Stats(pb.StatsRequest())
    assert (stats.lookups, stats.hits, stats.misses, stats.stores) == (2, 1, 1, 1)
    assert stats.tiers[0].name == "memory" and stats.tiers[0].max_bytes == CONFIG.memory_max_bytes


async def test_a_store_with_its_route_is_purged_by_that_prefix(
    stub: pb_grpc.CacheServiceStub,
) -> None:
    stored = await stub.Store(pb.StoreRequest(key=b"v1:rt:1", entry=entry(), route="v1:rt:"))
    assert stored.result == pb.STORE_RESULT_STORED
    await stub.Store(pb.StoreRequest(key=b"v1:other:1", entry=entry(), route="v1:other:"))
    hit = await stub.Lookup(pb.LookupRequest(key=b"v1:rt:1"))
    assert hit.outcome == pb.OUTCOME_HIT
    assert list(hit.entry.tags) == ["users", "route:v1:rt:"]  # the route's purge tag
    dropped = await stub.Invalidate(pb.InvalidateRequest(prefix=b"v1:rt:"))
    assert dropped.dropped == 1
    assert (await stub.Lookup(pb.LookupRequest(key=b"v1:rt:1"))).outcome == pb.OUTCOME_MISS
    assert (await stub.Lookup(pb.LookupRequest(key=b"v1:other:1"))).outcome == pb.OUTCOME_HIT


async def test_a_route_purge_drops_the_entries_of_that_route_only(
    stub: pb_grpc.CacheServiceStub,
) -> None:
    await stub.Store(pb.StoreRequest(key=b"v2:rt:1", entry=entry(), route="v2:rt:"))
    await stub.Store(pb.StoreRequest(key=b"v2:rt:2", entry=entry(), route="v2:rt:"))
    await stub.Store(pb.StoreRequest(key=b"v2:rtx:1", entry=entry(), route="v2:rtx:"))
    dropped = await stub.Invalidate(pb.InvalidateRequest(route="v2:rt:"))
    assert dropped.dropped == 2
    assert (await stub.Lookup(pb.LookupRequest(key=b"v2:rt:1"))).outcome == pb.OUTCOME_MISS
    assert (await stub.Lookup(pb.LookupRequest(key=b"v2:rtx:1"))).outcome == pb.OUTCOME_HIT


@pytest.mark.parametrize(
    ("request_msg", "method", "fragment"),
    [
        (pb.LookupRequest(key=b""), "Lookup", "key: must not be empty"),
        (pb.LookupRequest(key=b"\xc3\x28"), "Lookup", "key: is not valid UTF-8"),
        (pb.LookupRequest(key=b"k" * 5000), "Lookup", "longer than the 2048 allowed"),
        (pb.StoreRequest(key=b"k"), "Store", "entry: is required"),
        (
            pb.StoreRequest(key=b"k", entry=entry(body=b"x" * (64 * 1024 + 1))),
            "Store",
            "entry.body: is 65537 bytes, larger than the 65536 allowed",
        ),
        (
            pb.StoreRequest(key=b"k", entry=entry(ttl_ms=-10)),
            "Store",
            "entry.ttl_ms: must not be negative",
        ),
        (
            pb.StoreRequest(
                key=b"k",
                entry=pb.Entry(status=200, ttl_ms=1, headers=[pb.Header(name=b"a b", value=b"")]),
            ),
            "Store",
            "entry.headers[0].name",
        ),
        (pb.InvalidateRequest(), "Invalidate", "set one of key, prefix, tag or route"),
        (pb.InvalidateRequest(route="v1:a b:"), "Invalidate", "route: 'v1:a b:' cannot name"),
        (
            pb.StoreRequest(key=b"v1:a:1", entry=entry(), route="v1:b:"),
            "Store",
            "route: the key does not start with the route 'v1:b:'",
        ),
        (
            pb.StoreRequest(key=b"v1:a b:1", entry=entry(), route="v1:a b:"),
            "Store",
            "route: 'v1:a b:' cannot name a route",
        ),
    ],
)
async def test_bad_requests_get_invalid_argument_and_service_carries_on(
    stub: pb_grpc.CacheServiceStub, request_msg: object, method: str, fragment: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await getattr(stub, method)(request_msg)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in (info.value.details() or "")
    assert (await stub.Lookup(pb.LookupRequest(key=b"fine"))).outcome == pb.OUTCOME_MISS
    assert (await stub.Stats(pb.StatsRequest())).rejected_requests == 1


async def test_undecodable_bytes_are_invalid_argument(server: RunningServer) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        raw = channel.unary_unary("/strata.v1.CacheService/Lookup")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await raw(b"\x0a\xff\xff\xff\xff\x0f")  # a length prefix pointing past the end
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid strata.v1.LookupRequest" in (info.value.details() or "")
        stub = pb_grpc.CacheServiceStub(channel)
        assert (await stub.Stats(pb.StatsRequest())).rejected_requests == 1


async def test_health_and_reflection(server: RunningServer) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "strata.v1.CacheService"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        names = set()
        async for resp in refl.ServerReflectionInfo(ask()):
            names = {s.name for s in resp.list_services_response.service}
        assert "strata.v1.CacheService" in names


async def test_exchange_stream_through_the_plugin_client(server: RunningServer) -> None:
    def work() -> None:
        client = SidecarClient(server.address, timeout_s=2.0)
        try:
            assert client.lookup(b"k").outcome == pb.OUTCOME_MISS
            assert client.store(b"k", entry()).result == pb.STORE_RESULT_STORED
            hit = client.lookup(b"k")
            assert hit.outcome == pb.OUTCOME_HIT and hit.entry.body == b'{"ok":true}'
            # a refused call does not break the stream
            with pytest.raises(SidecarRejectedError, match="must not be empty"):
                client.lookup(b"")
            assert client.lookup(b"k").outcome == pb.OUTCOME_HIT
            assert client.invalidate(key=b"k").dropped == 1
            assert client.release(b"k").waiters_released == 0
        finally:
            client.close()

    await asyncio.to_thread(work)


async def test_exchange_batch_replies_in_order(server: RunningServer) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = pb_grpc.CacheServiceStub(channel)
        batch = pb.ExchangeRequest(
            calls=[
                pb.Call(id=7, store=pb.StoreRequest(key=b"a", entry=entry())),
                pb.Call(id=8, lookup=pb.LookupRequest(key=b"")),
                pb.Call(id=9, lookup=pb.LookupRequest(key=b"zzz")),
                pb.Call(id=10),
            ]
        )

        async def one() -> AsyncIterator[pb.ExchangeRequest]:
            yield batch

        replies = [r async for resp in stub.Exchange(one()) for r in resp.replies]
    assert [r.id for r in replies] == [7, 8, 9, 10]
    assert replies[0].store.result == pb.STORE_RESULT_STORED
    assert replies[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert replies[2].lookup.outcome == pb.OUTCOME_MISS
    assert "no operation" in replies[3].error.message


async def test_client_fails_open_within_its_deadline_and_recovers(server: RunningServer) -> None:
    def work() -> tuple[float, int]:
        client = SidecarClient(server.address, timeout_s=0.1)
        try:
            client.lookup(b"slow", coalesce_wait_ms=1, timeout_s=1.0)  # take the fill lease
            t0 = time.monotonic()
            with pytest.raises(SidecarUnavailableError):
                # waits on the lease server-side for 3 s; the client gives up after 0.1 s
                client.lookup(b"slow", coalesce_wait_ms=3000, timeout_s=0.1)
            elapsed = time.monotonic() - t0
            return elapsed, client.lookup(b"other").outcome
        finally:
            client.close()

    elapsed, outcome = await asyncio.to_thread(work)
    assert elapsed < 1.0
    assert outcome == pb.OUTCOME_MISS


async def test_client_against_no_sidecar_fails_open_fast(short_tmp: Path) -> None:
    def work() -> None:
        client = SidecarClient(f"unix:{short_tmp}/nobody.sock", timeout_s=0.2)
        with pytest.raises(SidecarUnavailableError):
            client.lookup(b"k")
        client.close()

    await asyncio.wait_for(asyncio.to_thread(work), 3)

"""Background stale-while-revalidate across two gateway nodes: each node is kongsim + the
real plugin server + its own sidecar, the two sidecars share the real Redis (tier and fill
leases). While the origin's refresh answer is held back, 16 concurrent clients spread over
both nodes are all answered stale at once, and the origin sees exactly one refresh for the
key, cluster-wide; once it is stored, both nodes answer the refreshed response without
refreshing again (RFC 5861 §3; README "HTTP semantics").
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from tests.e2e.http_semantics.conftest import fetch
from tests.integration.servers import service
from tests.support.scripted_origin import Reply, ScriptedOrigin
from tests.support.sidecar import SIDECAR_TIMEOUT_MS, clean_env
from tools.stack import Stack
from tools.stack.sidecar import SidecarProcess

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

JSON = ("Content-Type", "application/json")
#: The nodes listen on different ports: one Host for both, as behind a load balancer.
HOST = {"Host": "api.example"}
SWR = ("Cache-Control", "max-age=1, stale-while-revalidate=60")


@pytest.fixture(scope="module")
def origin() -> ScriptedOrigin:
    return ScriptedOrigin()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def nodes(origin: ScriptedOrigin) -> AsyncIterator[list[Stack]]:
    namespace = f"swr-{uuid.uuid4().hex[:8]}"
    settings = {"redis_url": service("STRATA_TEST_REDIS_URL"), "namespace": namespace}
    with tempfile.TemporaryDirectory(prefix="strata-swr-", dir="/tmp") as d:
        async with AsyncExitStack() as stack:
            out = []
            for i in range(2):
                work = Path(d) / f"node{i}"
                work.mkdir()
                sidecar = SidecarProcess(
                    f"unix:{work / 'sidecar.sock'}",
                    env=clean_env(),
                    metrics_listen="off",
                    log_level="WARNING",
                    settings=settings,
                )
                node = Stack(
                    work,
                    sidecar,
                    plugin={"stale_while_revalidate": 0, "stale_if_error": 0},
                    sidecar_settings={"timeout_ms": SIDECAR_TIMEOUT_MS},
                    upstream_app=origin.app,
                )
                out.append(await stack.enter_async_context(node))
            yield out


@pytest_asyncio.fixture(loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


async def test_one_refresh_per_key_across_nodes_and_nobody_waits(
    nodes: list[Stack], origin: ScriptedOrigin, http: aiohttp.ClientSession
) -> None:
    path = "/products/cluster-swr"
    gate = asyncio.Event()
    origin.script(
        path,
        Reply(200, [JSON, SWR, ("ETag", '"v1"')], b'{"v":1}'),
        Reply(
            200, [JSON, ("Cache-Control", "max-age=60"), ("ETag", '"v2"')], b'{"v":2}', gate=gate
        ),
    )
    first = await fetch(http, nodes[0], path, headers=HOST)
    assert first.cache == "Miss"
    await asyncio.sleep(0.3)
    # the other node finds node 0's entry in the shared Redis tier
    assert (await fetch(http, nodes[1], path, headers=HOST)).cache == "Hit"
    await asyncio.sleep(1.5)  # stale now, inside its 60 s window

    answers = await asyncio.wait_for(
        asyncio.gather(*(fetch(http, nodes[i % 2], path, headers=HOST) for i in range(16))),
        timeout=15,
    )
    # every client got the stale copy while the origin's refresh answer was still held back
    assert not gate.is_set()
    assert {a.cache for a in answers} == {"Stale"}, [a.cache for a in answers]
    assert {a.body for a in answers} == {b'{"v":1}'}
    assert origin.hits(path) == 2, [(r.path_qs, r.headers) for r in origin.requests(path)]
    refresh = origin.requests(path)[-1]
    assert refresh.header("If-None-Match") == '"v1"'

    gate.set()
    # the refresh stores v2 (memory of one node, and Redis); the other node's stale memory
    # copy gives way to it (`sidecar.engine.reads`) instead of refreshing once more
    for _ in range(50):
        await asyncio.sleep(0.1)
        answers = [await fetch(http, node, path, headers=HOST) for node in nodes]
        if all(a.body == b'{"v":2}' for a in answers):
            break
    assert [a.body for a in answers] == [b'{"v":2}', b'{"v":2}']
    assert origin.hits(path) == 2  # still the one refresh, cluster-wide

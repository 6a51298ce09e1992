"""kongsim's keep-alive pool is lua-nginx-module's cosocket pool (Kong 3.9 `rpc/mp_rpc.lua`
`Rpc:call`: `ngx.socket.connect` takes the head of the pool, `setkeepalive` after the answer
puts the connection back at the head): last in, first out, so the RPCs of one event, sent
back to back, stay on one connection while concurrent events each hold their own."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]

from kongsim.protocol.rpc import RpcClient


async def _numbered_server(path: Path) -> asyncio.Server:
    """Answers every request with the number of the connection it came on, after
    ``params[0]["delay"]`` seconds (0 if absent)."""
    numbers = itertools.count(1)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = next(numbers)
        unpacker = msgpack.Unpacker(raw=False)
        try:
            while data := await reader.read(65536):
                unpacker.feed(data)
                for _, msg_id, _, params in unpacker:
                    await asyncio.sleep(params[0].get("delay", 0) if params else 0)
                    writer.write(msgpack.packb([1, msg_id, None, number]))
        finally:
            writer.close()

    return await asyncio.start_unix_server(serve, path=str(path))


async def test_the_pool_is_lifo_and_an_events_rpcs_stay_on_one_connection(
    short_tmp: Path,
) -> None:
    server = await _numbered_server(short_tmp / "s.sock")
    client = RpcClient(str(short_tmp / "s.sock"), timeout=2)

    async def event(delay: float) -> list[Any]:
        # HandleEvent, then Steps sent right after each answer, as bridge_loop does
        first = await client.call("plugin.HandleEvent", {"delay": delay})
        return [first] + [await client.call("plugin.Step", {}) for _ in range(3)]

    try:
        # two concurrent events: two connections, each event on its own all along
        slow, fast = await asyncio.gather(event(0.05), event(0.0))
        assert len(set(slow)) == 1 and len(set(fast)) == 1 and slow[0] != fast[0]
        assert client.connects == 2
        # the slow event's connection went back to the pool last: it is taken first
        assert await client.call("plugin.Step", {}) == slow[0]

        # release order decides: hold two calls, answer the first-opened one last
        async def one(delay: float) -> Any:
            return await client.call("plugin.Step", {"delay": delay})

        late, early = await asyncio.gather(one(0.05), one(0.0))
        assert late != early
        assert await client.call("plugin.Step", {}) == late
        assert client.connects == 2
    finally:
        await client.close()
        server.close()
        await server.wait_closed()

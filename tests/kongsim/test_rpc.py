"""kongsim.protocol.rpc against scripted unix-socket servers, and against a real plugin server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest

from kongsim.config.plugins import PluginInfo
from kongsim.errors import RpcError, RpcProtocolError, RpcTimeoutError, RpcTransportError
from kongsim.protocol.process import PluginServerProcess
from kongsim.protocol.rpc import RpcClient
from kongsim.protocol.spec import PluginServerSpec

from .conftest import plugin_spec

Reply = Callable[[list[Any]], Awaitable[Any]]


class ScriptedServer:
    """A unix-socket server whose answer to each request is computed by ``reply``."""

    def __init__(self, path: Path, reply: Reply) -> None:
        self.path, self.reply = path, reply
        self.connections = 0
        self.requests: list[list[Any]] = []
        self.closing = asyncio.Event()
        self.handlers: set[asyncio.Task[Any]] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        unpacker = msgpack.Unpacker(raw=False)
        try:
            while data := await reader.read(65536):
                unpacker.feed(data)
                for message in unpacker:
                    self.requests.append(message)
                    answer = await self.reply(message)
                    if answer is None:
                        return
                    # a tuple: several messages written back to back (notifications first)
                    for item in answer if isinstance(answer, tuple) else (answer,):
                        writer.write(msgpack.packb(item))
                    await writer.drain()
        finally:
            writer.close()

    async def __aenter__(self) -> ScriptedServer:
        self.server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.closing.set()
        self.server.close()
        await asyncio.wait_for(asyncio.gather(*self.handlers, return_exceptions=True), 5)
        await self.server.wait_closed()


async def echo(message: list[Any]) -> Any:
    return [1, message[1], None, {"method": message[2], "params": message[3]}]


async def test_calls_share_one_pooled_connection_and_msgids_increase(short_tmp: Path) -> None:
    async with ScriptedServer(short_tmp / "s.sock", echo) as server:
        client = RpcClient(str(server.path), timeout=2)
        first = await client.call("plugin.Step", {"EventId": 1})
        second = await client.call("plugin.CloseInstance", 3)
        await client.close()
    assert first == {"method": "plugin.Step", "params": [{"EventId": 1}]}
    assert second["params"] == [3]
    assert [m[1] for m in server.requests] == [1, 2]
    assert server.connections == 1


async def test_per_call_mode_opens_a_connection_per_rpc(short_tmp: Path) -> None:
    async with ScriptedServer(short_tmp / "s.sock", echo) as server:
        client = RpcClient(str(server.path), timeout=2, pooled=False)
        await asyncio.gather(*(client.call("plugin.GetStatus") for _ in range(3)))
        await client.close()
    assert server.connections == 3


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (lambda m: [1, m[1], "no plugin instance #7", None], RpcError),
        (lambda m: [1, m[1] + 1, None, {}], RpcProtocolError),
        (lambda m: [0, m[1], "plugin.Step", []], RpcProtocolError),
        (lambda m: None, RpcTransportError),
    ],
)
async def test_errors(
    short_tmp: Path, answer: Callable[[list[Any]], Any], error: type[Exception]
) -> None:
    async def reply(message: list[Any]) -> Any:
        return answer(message)

    async with ScriptedServer(short_tmp / "s.sock", reply) as server:
        client = RpcClient(str(server.path), timeout=2)
        with pytest.raises(error):
            await client.call("plugin.HandleEvent", {"InstanceId": 7, "EventName": "access"})
        await client.close()


async def test_notifications_are_handled_and_the_answer_still_awaited(short_tmp: Path) -> None:
    """rpc/mp_rpc.lua Rpc:call: a [2, label, args] notification is dispatched
    (rpc_notifications:serverPid) and the read loop goes on to the [1, ...] response."""
    pids = iter([111, 111, 222])

    async def reply(message: list[Any]) -> Any:
        return ([2, "serverPid", next(pids)], [1, message[1], None, "ok"])

    changes: list[tuple[float, float | None]] = []
    async with ScriptedServer(short_tmp / "s.sock", reply) as server:
        client = RpcClient(
            str(server.path),
            timeout=2,
            on_server_pid_change=lambda old, new: changes.append((old, new)),
        )
        assert [await client.call("plugin.GetStatus") for _ in range(3)] == ["ok"] * 3
        await client.close()
    assert client.notifications == [("serverPid", 111), ("serverPid", 111), ("serverPid", 222)]
    assert client.server_pid == 222
    assert changes == [(111, 222)]


async def test_timeout_and_connect_failure(short_tmp: Path) -> None:
    async def silent(message: list[Any]) -> Any:
        await server.closing.wait()  # never answers while the client waits

    async with ScriptedServer(short_tmp / "s.sock", silent) as server:
        client = RpcClient(str(server.path), timeout=0.2)
        with pytest.raises(RpcTimeoutError, match=r"no answer within 0\.2 s"):
            await client.call("plugin.Step", {"EventId": 0})
        await client.close()
    with pytest.raises(RpcTransportError, match="trying to connect"):
        await RpcClient(str(short_tmp / "missing.sock"), timeout=1).call("plugin.GetStatus")


@pytest.fixture
async def ks_exit(short_tmp: Path) -> AsyncIterator[PluginServerProcess]:
    server = PluginServerProcess(
        PluginServerSpec.parse(plugin_spec("ks-exit")), str(short_tmp), str(short_tmp / "logs")
    )
    await server.query()
    await server.start()
    yield server
    await server.stop()


async def test_the_protocol_with_a_real_plugin_server(ks_exit: PluginServerProcess) -> None:
    assert isinstance(ks_exit.info, PluginInfo)
    assert (ks_exit.info.name, ks_exit.info.priority, ks_exit.info.phases) == (
        "ks-exit",
        1000,
        ("log", "access"),
    )
    client = RpcClient(ks_exit.socket_path, timeout=5)
    config = {"header": "x-exit", "status": 201, "body": "b", "tag": None}
    started = await client.call(
        "plugin.StartInstance", {"Name": "ks-exit", "Config": json.dumps(config)}
    )
    assert started["Id"] == 0 and started["Config"] == config
    reply = await client.call("plugin.HandleEvent", {"InstanceId": 0, "EventName": "access"})
    assert reply["Data"] == {"Method": "kong.request.get_header", "Args": ["x-exit"]}
    reply = await client.call("plugin.Step", {"EventId": reply["EventId"], "Data": "v"})
    assert reply["Data"]["Method"] == "kong.response.exit"
    assert reply["Data"]["Args"] == [201, "b:v", {"X-Exit": "1", "X-Tag": "None"}]
    # Kong sends nothing more for this event; a nil answer is a Step without Data
    reply = await client.call("plugin.HandleEvent", {"InstanceId": 0, "EventName": "access"})
    reply = await client.call("plugin.Step", {"EventId": reply["EventId"]})
    assert reply["Data"]["Method"] == "kong.response.set_header"
    with pytest.raises(RpcError, match="no plugin instance #9"):
        await client.call("plugin.HandleEvent", {"InstanceId": 9, "EventName": "access"})
    with pytest.raises(RpcError, match="not initizlied"):
        await client.call("plugin.StartInstance", {"Name": "nope", "Config": "{}"})
    await client.close()
    assert Path(ks_exit.log_path).read_text().count("instance #0 of ks-exit started") == 1

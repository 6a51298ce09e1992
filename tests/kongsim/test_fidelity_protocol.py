"""Fidelity with Kong 3.9.3, protocol side: the protocol rows of the table in kongsim/README.md.

The bridge and the instance table run against a scripted plugin server (:class:`FakeServer`),
so every RPC kongsim sends can be compared with what ``rpc/mp_rpc.lua`` (``Rpc:handle_event``,
``bridge_loop``, ``call_pdk_method``, ``get_step_method``) and ``plugin_servers/plugin.lua``
(``get_instance_id``) send.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from multidict import CIMultiDict

from kongsim.config.declarative import parse
from kongsim.config.entities import PluginEntity
from kongsim.config.plugins import ConfiguredPlugin, PluginInfo
from kongsim.errors import LuaError, RpcError
from kongsim.pdk import PdkEnv
from kongsim.protocol.bridge import Bridge, Worker
from kongsim.recorder import Recorder, RequestRecord
from kongsim.request.router import Router
from kongsim.request.state import RequestState, Terminal
from kongsim.request.uri import normalize

DECL = parse(
    {
        "_format_version": "3.0",
        "services": [
            {"name": "svc", "url": "http://up/", "routes": [{"name": "r", "paths": ["/"]}]}
        ],
    }
)

Script = Callable[[str, tuple[Any, ...]], Any]


class FakeServer:
    """Stands in for an ``RpcClient``: answers each RPC with ``script(method, params)``; an
    exception instance is raised as the RPC's failure."""

    timeout = 5.0

    def __init__(self, script: Script) -> None:
        self.script = script
        self.sent: list[tuple[str, tuple[Any, ...]]] = []

    async def call(self, method: str, *params: Any) -> Any:
        self.sent.append((method, params))
        answer = self.script(method, params)
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def methods(self) -> list[str]:
        return [m for m, _ in self.sent]


def plugin(seq: int = 1) -> ConfiguredPlugin:
    return ConfiguredPlugin(
        PluginEntity("p-1", "ks-x", {}, None, None, None, "plugin 'ks-x'"),
        PluginInfo("ks-x", 10, "1.0.0", ("access", "log"), [], server="ks-x"),
        {"ttl": 5},
        seq=seq,
    )


def state(phase: str = "access") -> RequestState:
    st = RequestState(
        method="GET",
        request_uri="/x?a=1",
        headers=CIMultiDict([("Host", "kong"), ("X-A", "1"), ("X-A", "2")]),
        body=b"",
        client_ip="127.0.0.1",
        client_port=1,
        server_port=8000,
    )
    st.match = Router(DECL).match("GET", "kong", normalize("/x"), {}, 8000)
    st.phase = phase
    return st


def event(*calls: Any) -> Script:
    """A script: StartInstance → Id 7; HandleEvent/Step → the PDK calls in order, then "ret"."""
    pending = list(calls)

    def script(method: str, params: tuple[Any, ...]) -> Any:
        if method == "plugin.StartInstance":
            return {"Id": 7, "Name": "ks-x", "Config": json.loads(params[0]["Config"])}
        if method == "plugin.CloseInstance":
            return {"Id": params[0]}
        data = pending.pop(0) if pending else "ret"
        if isinstance(data, Exception):
            return data
        if isinstance(data, tuple):
            data = {"Method": data[0], "Args": list(data[1:])}
        return {"EventId": 3, "Data": data}

    return script


async def run(
    server: FakeServer, st: RequestState | None = None, cp: ConfiguredPlugin | None = None
) -> tuple[Terminal | None, Recorder, RequestRecord, Worker]:
    worker = Worker(0)
    worker.rpc["ks-x"] = server  # type: ignore[assignment]
    recorder = Recorder()
    record = recorder.start("rid", "GET", "/x")
    bridge = Bridge([worker], recorder)
    result = await bridge.run(
        worker, cp or plugin(), st=st or state(), record=record, env=PdkEnv(DECL, "node")
    )
    return result, recorder, record, worker


async def test_handle_event_and_step_loop_like_bridge_loop() -> None:
    """HandleEvent {InstanceId, EventName}; each PDK call answered with its typed Step*
    method and {EventId, Data}; Data left out for nil; the loop ends at "ret"."""
    server = FakeServer(
        event(
            ("kong.request.get_header", "missing"),
            ("kong.request.get_headers",),
            ("kong.router.get_route",),
            ("kong.log.info", "x"),
        )
    )
    result, recorder, record, _ = await run(server)
    assert result is None and recorder.issues == []
    assert server.methods == [
        "plugin.StartInstance",
        "plugin.HandleEvent",
        "plugin.Step",
        "plugin.StepMultiMap",
        "plugin.StepRoute",
        "plugin.Step",
    ]
    assert server.sent[1][1] == ({"InstanceId": 7, "EventName": "access"},)
    assert server.sent[2][1] == ({"EventId": 3},)  # nil: no Data key
    assert server.sent[3][1] == ({"EventId": 3, "Data": {"host": ["kong"], "x-a": ["1", "2"]}},)
    assert server.sent[4][1][0]["Data"]["name"] == "r"
    assert server.sent[5][1] == ({"EventId": 3},)
    assert record.events[0].outcome == "ret"


async def test_start_instance_config_and_the_instance_cache() -> None:
    """plugin.lua get_instance_id: StartInstance {Name, Config=cjson(conf)} once per plugin id
    and __seq__; a new __seq__ starts a new instance, then CloseInstance(old)."""
    server = FakeServer(event())
    _, _, _, worker = await run(server)
    config = json.loads(server.sent[0][1][0]["Config"])
    assert server.sent[0][1][0]["Name"] == "ks-x"
    assert config["ttl"] == 5 and config["__plugin_id"] == "p-1" and config["__seq__"] == 1
    assert {"__key__", "__ws_id"} <= set(config)
    bridge = Bridge([worker], Recorder())
    record = RequestRecord("r2", "GET", "/")
    env = PdkEnv(DECL, "node")
    await bridge.run(worker, plugin(), st=state(), record=record, env=env)
    assert server.methods.count("plugin.StartInstance") == 1  # cached: same id and seq
    await bridge.run(worker, plugin(seq=2), st=state(), record=record, env=env)
    starts = [i for i, m in enumerate(server.methods) if m == "plugin.StartInstance"]
    assert len(starts) == 2
    assert server.sent[starts[1] + 1] == ("plugin.CloseInstance", (7,))


async def test_a_failed_start_instance_is_a_hard_error() -> None:
    """get_instance_id: error(err) when StartInstance fails: the request gets a 500."""

    def script(method: str, params: tuple[Any, ...]) -> Any:
        return RpcError("ks-x not initizlied")

    with pytest.raises(LuaError, match="not initizlied"):
        await run(FakeServer(script))


async def test_terminal_call_ends_the_event() -> None:
    """response.lua exit: in access the coroutine yields; Kong sends no further Step."""
    server = FakeServer(event(("kong.response.exit", 403, "no", {"X-A": "1"}), ("kong.log.info",)))
    result, _, record, _ = await run(server)
    assert isinstance(result, Terminal) and (result.status, result.body) == (403, b"no")
    assert server.methods == ["plugin.StartInstance", "plugin.HandleEvent"]
    assert record.events[0].outcome == "exit"


async def test_unknown_pdk_method_is_answered_with_nil() -> None:
    """call_pdk_method: "could not find pdk method" logged, nil returned (Step without Data)."""
    server = FakeServer(event(("kong.request.get_nonexistent",)))
    result, recorder, _, _ = await run(server)
    assert result is None
    assert server.sent[2] == ("plugin.Step", ({"EventId": 3},))
    assert [i.kind for i in recorder.issues] == ["unknown_pdk_method"]


async def test_nil_argument_truncates_the_argument_list() -> None:
    """call_pdk_method: method(unpack(args)); a nil in Args ends the list Lua sees."""
    server = FakeServer(event(("kong.response.exit", 200, None, {"X-A": "1"})))
    result, recorder, _, _ = await run(server)
    assert isinstance(result, Terminal)
    assert "X-A" not in dict(result.headers)  # the headers after the nil were dropped
    assert any("truncates the argument list" in w for w in recorder.warnings)


async def test_rpc_error_fails_open() -> None:
    """Rpc:handle_event: any other RPC error is logged (kong.log.err) and the request goes on."""
    server = FakeServer(event(RpcError("event id 3 not found")))
    result, recorder, record, _ = await run(server)
    assert result is None
    assert [i.kind for i in recorder.issues] == ["rpc_error"]
    assert record.events[0].outcome == "error"


async def test_no_plugin_instance_resets_instances_and_retries() -> None:
    """Rpc:handle_event: "no plugin instance" → reset_instance (all of the plugin's instances)
    and handle_event again, which starts a new instance."""
    calls = {"n": 0}

    def script(method: str, params: tuple[Any, ...]) -> Any:
        if method == "plugin.HandleEvent":
            calls["n"] += 1
            if calls["n"] <= 2:  # Kong retries without a limit
                return RpcError("no plugin instance #7")
        return event()(method, params)

    server = FakeServer(script)
    result, recorder, _, _ = await run(server)
    assert result is None and recorder.issues == []
    assert server.methods == ["plugin.StartInstance", "plugin.HandleEvent"] * 3


async def test_hard_lua_error_sends_nothing_more() -> None:
    """A PDK function that raises (here: wrong phase) is a Lua error: no Step is sent and the
    error reaches Kong's phase runner (access: 500 "An unexpected error occurred")."""
    server = FakeServer(event(("kong.response.get_status",), ("kong.log.info",)))
    with pytest.raises(LuaError, match="cannot be called in access phase"):
        await run(server)
    assert server.methods == ["plugin.StartInstance", "plugin.HandleEvent"]


async def test_raw_body_goes_out_as_bin_and_nil_raw_body_is_a_hard_error() -> None:
    """must_fix fix_raw: msgpack bin; fix_raw(nil) fails while packing (a Lua error)."""
    st = state()
    st.body = b"\x00\xff"
    server = FakeServer(event(("kong.request.get_raw_body",)))
    await run(server, st)
    assert server.sent[2] == ("plugin.Step", ({"EventId": 3, "Data": b"\x00\xff"},))
    st.body = b"x" * 9000
    with pytest.raises(LuaError, match="a nil value"):
        await run(FakeServer(event(("kong.request.get_raw_body",))), st)


async def test_empty_tables_go_out_as_arrays_and_multimaps_as_maps() -> None:
    """lua-MessagePack packs an empty table as an empty array; fix_mmap sends an empty map."""
    st = state()
    st.request_uri = "/x"
    st.ctx_shared["e"] = {}
    server = FakeServer(event(("kong.ctx.shared.get", "e"), ("kong.request.get_query",)))
    await run(server, st)
    assert server.sent[2][1][0]["Data"] == []
    assert server.sent[3] == ("plugin.StepMultiMap", ({"EventId": 3, "Data": {}},))


async def test_log_phase_reads_the_saved_request_in_the_timer() -> None:
    """plugin.lua build_phases: log runs in a timer; exposed_api answers from saved data, and
    ngx.var-based functions fail (a hard error, only logged by Kong)."""
    st = state("log")
    st.in_timer = True
    st.response_status = 201
    server = FakeServer(
        event(
            ("kong.request.get_header", "x-a"),
            ("kong.response.get_status",),
            ("kong.request.get_method",),
        )
    )
    with pytest.raises(LuaError, match="API disabled"):
        await run(server, st)
    assert server.sent[2] == ("plugin.Step", ({"EventId": 3, "Data": "1"},))
    assert server.sent[3] == ("plugin.Step", ({"EventId": 3, "Data": 201},))
    assert len(server.sent) == 4

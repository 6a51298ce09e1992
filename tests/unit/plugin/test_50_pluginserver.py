"""The plugin server's runtime (kong_plugin.pluginserver): events as greenlets, kong-pdk's
RPC methods and error texts, the instance registry, and the relay between workers."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import msgpack  # type: ignore[import-untyped]
import pytest

from kong_plugin.pluginserver.cli import module_for, without
from kong_plugin.pluginserver.connection import serve
from kong_plugin.pluginserver.events import Event, PdkAfterExit, blocking
from kong_plugin.pluginserver.instances import prepare_registry
from kong_plugin.pluginserver.supervisor import resolve_workers
from kong_plugin.pluginserver.worker import BLOCKING_THREADS, MAX_WORKERS, Worker, plugin_info
from kongsim.errors import RpcError
from kongsim.protocol.rpc import RpcClient


class Toy:
    """A plugin whose phases exercise the PDK path."""

    after_exit: ClassVar[list[str]] = []
    gate: ClassVar[threading.Event] = threading.Event()

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def access(self, kong: Any) -> None:
        path, err = kong.request.get_path()
        assert err is None
        if path == "/exit":
            kong.response.exit(200, b"bye", {"X": "1"})
            try:
                kong.request.get_path()
            except PdkAfterExit as exc:
                Toy.after_exit.append(str(exc))
            return
        if path == "/raise":
            raise RuntimeError("boom")
        if path == "/block":
            path = blocking(lambda: "blocked:" + path)
        if path == "/park":
            gate = Toy.gate
            path = blocking(lambda: "parked:" + str(gate.wait(10)), parked=True)
        kong.response.set_header("X-Path", f"{path}:{self.config.get('n')}")

    def log(self, kong: Any) -> None:
        return None


def _module() -> Any:
    return module_for("toy", Toy, "1.2.3", 5, [{"n": {"type": "integer"}}])


def _drive(event: Event, answers: list[Any]) -> list[Any]:
    seen = []
    out = event.start()
    for answer in answers:
        seen.append((out.kind, out.payload))
        out = event.feed(answer)
    seen.append((out.kind, out.payload))
    return seen


def test_an_event_hands_each_pdk_call_out_and_gets_lua_style_answers() -> None:
    event = Event(Toy({"n": 1}).access, 64)
    seen = _drive(event, [("/a", None), (None, None)])
    assert seen[0] == ("call", {"Method": "kong.request.get_path", "Args": ()})
    assert seen[1] == ("call", {"Method": "kong.response.set_header", "Args": ("X-Path", "/a:1")})
    assert seen[2] == ("ret", None)


def test_exit_ends_the_event_and_a_later_pdk_call_is_refused_not_hung() -> None:
    Toy.after_exit.clear()
    event = Event(Toy({}).access, 64)
    out = event.start()
    out = event.feed(("/exit", None))
    assert (out.kind, out.payload["Method"]) == ("exit", "kong.response.exit")
    assert event.exited
    out = event.feed((None, None))  # the loop lets it run on
    assert out.kind == "ret"
    assert Toy.after_exit == ["PDK call kong.request.get_path after kong.response.exit"]


def test_a_raising_phase_ends_its_event_instead_of_leaving_kong_waiting() -> None:
    event = Event(Toy({}).access, 64)
    event.start()
    out = event.feed(("/raise", None))
    assert out.kind == "fail" and isinstance(out.payload, RuntimeError)


def test_blocking_work_leaves_the_event_and_its_result_comes_back() -> None:
    assert blocking(lambda: 3) == 3  # outside an event: called here
    event = Event(Toy({"n": 2}).access, 64)
    event.start()
    out = event.feed(("/block", None))
    assert out.kind == "wait"
    out = event.feed((True, out.payload()))
    assert out.payload["Args"] == ("X-Path", "blocked:/block:2")
    event2 = Event(Toy({}).access, 128)
    event2.start()
    out = event2.feed(("/block", None))
    out = event2.feed((False, OSError("sidecar down")))  # the exception is raised inside
    assert out.kind == "fail" and isinstance(out.payload, OSError)


def test_the_dump_is_kong_pdks_shape() -> None:
    info = plugin_info(_module())
    assert info == {
        "Name": "toy",
        "Phases": ["log", "access"],
        "Priority": 5,
        "Version": "1.2.3",
        "Schema": {
            "name": "toy",
            "fields": [{"config": {"type": "record", "fields": [{"n": {"type": "integer"}}]}}],
        },
    }


def test_worker_counts_and_worker_only_options() -> None:
    assert 1 <= resolve_workers("auto") <= MAX_WORKERS
    assert resolve_workers("3") == 3
    for bad in ("0", "65", "two", ""):
        with pytest.raises(ValueError, match="--workers"):
            resolve_workers(bad)
    argv = ["-p", "/x", "--workers", "2", "--worker=1", "--listen-fd", "5", "-v"]
    assert without(argv, ("--workers", "--worker", "--listen-fd")) == ["-p", "/x", "-v"]


@pytest.fixture
async def two_workers(tmp_path: Path) -> AsyncIterator[tuple[RpcClient, RpcClient, Worker]]:
    """Two workers of one server in this loop, each with its own listening socket standing
    for the connections Kong's pool happens to route to it."""
    registry = tmp_path / "s.sock.instances"
    prepare_registry(registry)
    sock_path = str(tmp_path / "s.sock")
    workers, tasks, clients = [], [], []
    for index in range(2):
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(tmp_path / f"kong{index}.sock"))
        listener.listen(16)
        listener.setblocking(False)
        worker = Worker(_module(), registry, index, 2, sock_path)
        workers.append(worker)
        tasks.append(asyncio.create_task(serve(worker, listener, relay=True)))
        clients.append(RpcClient(str(tmp_path / f"kong{index}.sock"), timeout=5))
    await asyncio.sleep(0.05)
    try:
        yield clients[0], clients[1], workers[1]
    finally:
        for client in clients:
            await client.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_any_worker_runs_an_instance_another_started_and_relays_foreign_steps(
    two_workers: tuple[RpcClient, RpcClient, Worker],
) -> None:
    a, b, worker_b = two_workers
    started = await a.call("plugin.StartInstance", {"Name": "toy", "Config": '{"n": 7}'})
    assert started["Config"] == {"n": 7} and started["Id"] >= 2**20
    # worker B has never seen the instance: it loads it from the registry
    first = await b.call("plugin.HandleEvent", {"InstanceId": started["Id"], "EventName": "access"})
    assert first["Data"]["Method"] == "kong.request.get_path"
    assert first["EventId"] % MAX_WORKERS == 1
    # the next Step reaches worker A (another pooled connection): relayed to B
    step = await a.call("plugin.Step", {"EventId": first["EventId"], "Data": "/r"})
    assert step["Data"] == {"Method": "kong.response.set_header", "Args": ["X-Path", "/r:7"]}
    assert worker_b.relayed == 0  # B ran it; A relayed
    done = await a.call("plugin.Step", {"EventId": first["EventId"]})
    assert done == {"Data": "ret", "EventId": first["EventId"]}
    with pytest.raises(RpcError, match=f"event id {first['EventId']} not found"):
        await a.call("plugin.Step", {"EventId": first["EventId"], "Data": None})


async def test_kong_pdk_error_texts(two_workers: tuple[RpcClient, RpcClient, Worker]) -> None:
    a, _, _ = two_workers
    with pytest.raises(RpcError, match="no plugin instance #123"):
        await a.call("plugin.HandleEvent", {"InstanceId": 123, "EventName": "access"})
    with pytest.raises(RpcError, match="other not initizlied"):
        await a.call("plugin.StartInstance", {"Name": "other", "Config": "{}"})
    with pytest.raises(RpcError, match="Expecting value"):
        await a.call("plugin.StartInstance", {"Name": "toy", "Config": "not json"})
    with pytest.raises(RpcError, match="event id 64 not found"):
        await a.call("plugin.Step", {"EventId": 64, "Data": None})
    with pytest.raises(RpcError, match="RPC for other is not supported"):
        await a.call("other.Thing")
    started = await a.call("plugin.StartInstance", {"Name": "toy", "Config": "{}"})
    closed = await a.call("plugin.CloseInstance", started["Id"])
    assert closed["Id"] == started["Id"]
    with pytest.raises(RpcError, match="no plugin instance"):
        await a.call("plugin.InstanceStatus", started["Id"])
    status = await a.call("plugin.GetStatus")
    assert set(status["Plugins"]["toy"]) >= {"Instances", "LoadTime", "LastCloseInstance"}


async def test_exit_answers_kong_at_once_and_non_utf8_strings_round_trip(
    two_workers: tuple[RpcClient, RpcClient, Worker],
) -> None:
    a, _, _ = two_workers
    iid = (await a.call("plugin.StartInstance", {"Name": "toy", "Config": "{}"}))["Id"]
    first = await a.call("plugin.HandleEvent", {"InstanceId": iid, "EventName": "access"})
    out = await a.call("plugin.Step", {"EventId": first["EventId"], "Data": "/exit"})
    assert out["Data"]["Method"] == "kong.response.exit"
    assert out["Data"]["Args"] == [200, b"bye", {"X": "1"}]
    # a Lua string that is not UTF-8 (a header value's raw bytes) comes back unchanged
    first = await a.call("plugin.HandleEvent", {"InstanceId": iid, "EventName": "access"})
    raw = b"/caf\xe9"
    reader, writer = await asyncio.open_unix_connection(a.socket_path)
    # Kong packs a Lua string as a msgpack str, whatever bytes it holds
    step = [0, 99, "plugin.Step", [{"EventId": first["EventId"], "Data": raw}]]
    writer.write(msgpack.packb(step, use_bin_type=False))
    unpacker = msgpack.Unpacker(raw=True)
    unpacker.feed(await reader.read(65536))
    reply = next(unpacker)
    writer.close()
    assert reply[2] is None
    assert reply[3][b"Data"][b"Args"][1] == raw + b":None"


def test_the_registry_is_private_and_emptied_at_start(tmp_path: Path) -> None:
    registry = tmp_path / "r"
    registry.mkdir()
    (registry / "5.json").write_text(json.dumps({"Name": "toy", "Config": "{}", "T": 0}))
    prepare_registry(registry)
    assert list(registry.iterdir()) == []
    assert registry.stat().st_mode & 0o777 == 0o700


def test_request_state_survives_the_trip_through_kong_ctx_shared() -> None:
    from kong_plugin import carry  # noqa: PLC0415
    from kong_plugin.cache_control import parse_cache_control  # noqa: PLC0415
    from kong_plugin.freshness import EntryTiming  # noqa: PLC0415
    from kong_plugin.headers import Headers  # noqa: PLC0415
    from kong_plugin.inflight import RequestState  # noqa: PLC0415
    from kong_plugin.stored import StoredEntry  # noqa: PLC0415

    entry = StoredEntry(
        200,
        Headers({"etag": ('"v1"',), "x-raw": ("caf\udce9",)}),
        b"\x00body\xff",
        EntryTiming(1000.5, 60, 10, 0, 3600),
        tags=("t1",),
        vary=("accept-encoding",),
    )
    state = RequestState(
        "store",
        "GET",
        "h",
        "/p",
        query="a=1",
        key="v1:r:k",
        route="v1:r",
        request_headers=[(b"accept", b"text/html"), (b"x-bin", b"\xe9\x00")],
        request_cc=parse_cache_control('no-cache, max-stale=5, private="a, b"'),
        guard="cookie",
        request_time=12.25,
        fill_lease=True,
        stale=entry,
        stale_age_s=3.5,
        looked_up_at=13.0,
        stale_if_error=True,
        status_word="Refresh",
        fwd="stale",
        client_conditional=True,
        debug=True,
        origin="route-1",
    )
    text = carry.pack(state)
    assert all(ord(c) < 256 for c in text)  # travels as UTF-8 text through Lua
    assert carry.unpack(text) == state
    assert carry.unpack(text.encode("utf-8")) == state  # a PDK that answers bytes
    for other in (None, 5, "token-s1", "strata1:" + "x", text[:-3], b"\xff"):
        assert carry.unpack(other) is None
        assert carry.nonce_of(other) == 0
    state.nonce = 0xABCDEF
    text = carry.pack(state)
    assert carry.nonce_of(text) == 0xABCDEF  # read without decoding the rest
    assert carry.unpack(text) == state


async def test_notices_reach_the_other_workers(
    two_workers: tuple[RpcClient, RpcClient, Worker],
) -> None:
    _, _, worker_b = two_workers
    got: list[Any] = []
    worker_b.peers.handlers["t.note"] = got.append
    # worker A is the other one in the fixture: find it through worker B's peer paths
    sender = Worker(_module(), worker_b.instances.registry, 0, 2, worker_b.socket_path)
    sender.peers.bind(asyncio.get_running_loop())
    sender.peers.notify("t.note", ["x", 1])
    sender.peers.notify("t.unknown", ["ignored"])
    for _ in range(100):
        if got:
            break
        await asyncio.sleep(0.01)
    sender.close()
    assert got == [["x", 1]]
    assert worker_b.peers.received == 1


def test_origin_changes_are_reported_and_replayed_without_echo() -> None:
    from kong_plugin.origin import OriginHealth  # noqa: PLC0415

    here, there = OriginHealth(distinct_keys=2), OriginHealth(distinct_keys=2)
    told: list[Any] = []
    here.on_change = told.append
    there.on_change = lambda event: pytest.fail(f"a replayed change was reported: {event}")
    here.succeeded("r", "zz")  # nothing tracked: no notice
    here.failed("r", "a", unreachable=True)
    here.failed("r", "b")
    for event in told:
        there.apply(event)
    assert told == [["failed", "r", "a", True], ["failed", "r", "b", False]]
    assert there.is_down("r") and there.unreachable("a") and not there.unreachable("b")
    here.succeeded("r", "a")
    there.apply(told[-1])
    assert not there.is_down("r")
    there.apply(["failed", "r"])  # malformed: ignored
    there.apply("nonsense")


def test_events_kong_abandoned_are_ended(tmp_path: Path) -> None:
    registry = tmp_path / "r"
    prepare_registry(registry)
    worker = Worker(_module(), registry, 0, 1, str(tmp_path / "s.sock"))
    answers: list[Any] = []
    iid = worker.instances.start({"Name": "toy", "Config": "{}"})["Id"]
    worker.call(
        "plugin.HandleEvent",
        [{"InstanceId": iid, "EventName": "access"}],
        lambda err, res: answers.append(res),
    )
    event = worker.events[answers[0]["EventId"]]
    assert worker.end_abandoned(event.started_at) == 0  # not older than that
    assert worker.end_abandoned(event.started_at + 1) == 1
    assert event.dead and worker.events == {}
    worker.close()


async def test_lookups_parked_on_another_request_never_hold_up_its_store(tmp_path: Path) -> None:
    """More parked calls than the pool has threads (a stampede's waiting lookups) still
    leave a plain blocking call (the leader's store) to run at once; it used to queue
    behind them until their wait ran out (`python -m bench stampede`, one node, N = 64)."""
    registry = tmp_path / "r"
    prepare_registry(registry)
    worker = Worker(_module(), registry, 0, 1, str(tmp_path / "s.sock"))
    worker.loop = asyncio.get_running_loop()
    Toy.gate = threading.Event()
    answers: dict[str, list[Any]] = {"park": [], "block": []}

    def start(path: str, eid: int) -> None:
        event = Event(Toy({"n": 1}).access, eid)
        event.start()
        out = event.feed((path, None))
        assert out.kind == ("park" if path == "/park" else "wait")
        worker._advance(event, out, lambda err, res: answers[path[1:]].append(res))

    try:
        for i in range(BLOCKING_THREADS + 8):
            start("/park", 64 * (i + 1))
        start("/block", 64 * 1000)
        for _ in range(200):
            if answers["block"]:
                break
            await asyncio.sleep(0.01)
        assert answers["block"], "the plain call queued behind the parked ones"
        assert answers["park"] == []  # they are all still waiting
        Toy.gate.set()
        for _ in range(500):
            if len(answers["park"]) == BLOCKING_THREADS + 8:
                break
            await asyncio.sleep(0.01)
        assert len(answers["park"]) == BLOCKING_THREADS + 8
    finally:
        Toy.gate.set()
        worker.close()

"""One plugin event, as Kong 3.9's ``Rpc:handle_event`` and ``bridge_loop`` run it.

1. get the instance id (:mod:`kongsim.protocol.instances`; may call ``StartInstance``);
2. ``plugin.HandleEvent {InstanceId, EventName}``;
3. while the answer's ``Data`` is not ``"ret"``: answer the PDK callback it holds
   (:mod:`kongsim.pdk`) with the matching ``plugin.Step*`` RPC (``Data`` omitted for ``nil``);
4. a terminal callback (``kong.response.exit``/``error``) ends the event: nothing more is sent.

Errors, as Kong treats them: an RPC error containing "no plugin instance" forgets the plugin's
instances in every worker and retries the whole event, without a limit (``Rpc:handle_event``
calls itself; kongsim gives up after the RPC timeout and reports the hang Kong would have);
any other RPC error, a timeout or a closed connection is logged and the request goes on
as if the plugin had succeeded (fail-open); an unknown PDK method is logged and answered with
``nil``; a hard Lua error (bad PDK call, failed ``StartInstance``, a malformed message) is raised
as :class:`~kongsim.errors.LuaError` for the caller to turn into Kong's 500. Every one of these is
recorded as an issue (strict mode fails the request on it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from kongsim.config.plugins import ConfiguredPlugin
from kongsim.errors import (
    LuaError,
    RpcError,
    RpcProtocolError,
    RpcTimeoutError,
    RpcTransportError,
    WireEncodingError,
)
from kongsim.pdk import Pdk, PdkAnswer, PdkEnv, UnknownPdkMethod
from kongsim.protocol.instances import InstanceTable
from kongsim.protocol.rpc import RpcClient
from kongsim.recorder import EventRecord, Issue, Recorder, RequestRecord
from kongsim.request.state import RequestState, Terminal

log = logging.getLogger("kongsim.bridge")


@dataclass
class Worker:
    """A simulated nginx worker: its own RPC clients (msgid counters, pools) and instances."""

    index: int
    rpc: dict[str, RpcClient] = field(default_factory=dict)
    instances: InstanceTable = field(default_factory=InstanceTable)


@dataclass
class _Event:
    worker: Worker
    plugin: ConfiguredPlugin
    st: RequestState
    record: RequestRecord
    env: PdkEnv
    stats: EventRecord


class Bridge:
    """Runs plugin events for all workers."""

    def __init__(self, workers: list[Worker], recorder: Recorder) -> None:
        self.workers = workers
        self.recorder = recorder

    async def run(
        self,
        worker: Worker,
        plugin: ConfiguredPlugin,
        *,
        st: RequestState,
        record: RequestRecord,
        env: PdkEnv,
    ) -> Terminal | None:
        """Run the current phase (``st.phase``) of ``plugin``; return its terminal response.

        Raises :class:`LuaError` for errors Kong turns into a 500 (already recorded).
        """
        ev = _Event(worker, plugin, st, record, env, EventRecord(plugin.name, st.phase))
        record.events.append(ev.stats)
        started = time.perf_counter()
        try:
            return await self._run(ev)
        except LuaError as exc:
            if ev.stats.outcome != "error":
                self._issue(ev, "lua_error", str(exc))
            log.error("%s/%s: %s", plugin.name, st.phase, exc)  # noqa: TRY400 - expected
            raise
        finally:
            ev.stats.duration_ms = (time.perf_counter() - started) * 1000

    def _issue(self, ev: _Event, kind: str, message: str) -> None:
        ev.stats.outcome = "error"
        self.recorder.issue(ev.record, Issue(kind, message, ev.plugin.name, ev.st.phase))

    def _call(self, ev: _Event, method: str, *params: Any) -> Coroutine[Any, Any, Any]:
        """Count one RPC of the event and return its call, to be awaited (no extra frame)."""
        server = ev.plugin.info.server
        assert server is not None, "bridge runs external plugins only"
        ev.stats.rpcs += 1
        ev.stats.rpc_methods.append(method)
        return ev.worker.rpc[server].call(method, *params)

    async def _run(self, ev: _Event) -> Terminal | None:
        name, phase = ev.plugin.name, ev.st.phase
        failure: tuple[str, str] | None = None
        server = ev.plugin.info.server
        assert server is not None
        deadline = time.monotonic() + ev.worker.rpc[server].timeout
        while True:
            try:
                instance_id = ev.worker.instances.cached(ev.plugin)
                if instance_id is None:
                    instance_id = await ev.worker.instances.get_instance_id(
                        ev.plugin, lambda method, *params: self._call(ev, method, *params)
                    )
                ev.stats.instance_id = instance_id
                return await self._loop(ev, instance_id)
            except RpcError as exc:
                text = str(exc)
                if "no plugin instance" in text.lower():
                    if time.monotonic() > deadline:
                        failure = (
                            "rpc_timeout",
                            f"{text}: still failing after restarting the instance for "
                            f"{ev.worker.rpc[server].timeout:g} s; Kong retries this without a "
                            "limit, so the request would hang",
                        )
                        break
                    log.warning("%s: %s; restarting its instances", name, text)
                    self.recorder.warn(ev.record, f"{name}/{phase}: {text} (instance restarted)")
                    for w in self.workers:
                        w.instances.reset_plugin(name)
                    ev.stats.pdk_calls.clear()
                    continue
                failure = ("rpc_error", text)
            except RpcTimeoutError as exc:
                failure = ("rpc_timeout", f"{exc}; did the plugin raise? see its server log")
            except RpcTransportError as exc:
                failure = ("rpc_transport", str(exc))
            except WireEncodingError as exc:
                failure = ("rpc_transport", f"no data: {exc}")
            except RpcProtocolError as exc:
                self._issue(ev, "protocol", str(exc))
                raise LuaError(str(exc)) from exc
            break
        if failure is not None:
            log.error("%s/%s: %s (fail-open)", name, phase, failure[1])
            self._issue(ev, *failure)
        return None

    async def _loop(self, ev: _Event, instance_id: int) -> Terminal | None:
        st, plugin = ev.st, ev.plugin
        reply = await self._call(
            ev, "plugin.HandleEvent", {"InstanceId": instance_id, "EventName": st.phase}
        )
        if not isinstance(reply, dict) or not isinstance(reply.get("EventId"), int):
            raise RpcProtocolError(f"HandleEvent: unexpected answer {reply!r:.200}")
        event_id = reply["EventId"]

        def warn(message: str) -> None:
            self.recorder.warn(ev.record, f"{plugin.name}/{st.phase}: {message}")

        pdk = Pdk(st, plugin, ev.env, warn)
        while True:
            data = reply.get("Data")
            if data == "ret":
                return None
            if not isinstance(data, dict) or not isinstance(data.get("Method"), str):
                raise RpcProtocolError(f"Step: not a PDK call: {data!r:.200}")
            method = data["Method"]
            ev.stats.pdk_calls.append(method)
            unknown = False
            try:
                answer = pdk.call(method, data.get("Args"))
            except UnknownPdkMethod:
                answer, unknown = PdkAnswer(None), True
            if unknown:
                log.error("%s: could not find pdk method: %s", plugin.name, method)
                self.recorder.issue(
                    ev.record,
                    Issue(
                        "unknown_pdk_method",
                        f"could not find pdk method: {method}",
                        plugin.name,
                        st.phase,
                    ),
                )
            if isinstance(answer, Terminal):
                ev.stats.outcome = "exit"
                return answer
            params: dict[str, Any] = {"EventId": event_id}
            if answer.value is not None:
                params["Data"] = answer.value
            reply = await self._call(ev, answer.step_method, params)
            if reply is None:
                # neither error nor result: bridge_loop returns nil, nil and the event ends
                # without a word (mp_rpc.lua); nothing is logged
                self.recorder.warn(
                    ev.record,
                    f"{plugin.name}/{st.phase}: {answer.step_method} answered neither an error "
                    "nor a result; Kong ends the event silently",
                )
                return None
            if not isinstance(reply, dict):
                raise RpcProtocolError(f"{answer.step_method}: unexpected answer {reply!r:.200}")

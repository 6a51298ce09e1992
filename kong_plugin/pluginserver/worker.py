"""One plugin-server worker: the RPC methods Kong calls, on one asyncio loop, each event a
greenlet (`kong_plugin.pluginserver.events`); its connections are
`kong_plugin.pluginserver.connection`'s, its framing `kong_plugin.pluginserver.framing`'s.

Wire: ``[0, msgid, "plugin.X", [param]]`` answered by ``[1, msgid, err, result]``, exactly
kong-pdk 0.36's methods, shapes and error texts (``no plugin instance #N``, ``event id N
not found``, ``<name> not initizlied``).

Several workers (`kong_plugin.pluginserver.supervisor`) accept on one listening socket.
Kong takes a pooled connection for every RPC (``rpc/mp_rpc.lua`` ``Rpc:call``) and returns
it before the next; nothing yields between one ``Step`` and the next connect, and the pool
hands back the connection just returned, so an event's RPCs normally reach the worker that
runs it. One that does not is relayed: an event id carries its worker's index
(``id % MAX_WORKERS``), and each worker also listens on a private socket its peers forward
such calls to. The supervisor also asks each worker for its metrics there
(`METRICS_METHOD`, answered with `Worker.snapshot`'s mapping; see
`kong_plugin.pluginserver.metrics_node`).

Not guaranteed: an event survives its worker (a dead worker's events end; Kong logs the
RPC error and goes on without the plugin for that request, as it does for any plugin-server
error); `blocking` calls queue when the pool is busy (their own deadlines still apply).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import greenlet
from kong_pdk.module import Module

from kong_plugin.pluginserver.events import Event, Yielded
from kong_plugin.pluginserver.framing import PACKER, new_unpacker
from kong_plugin.pluginserver.instances import Instances, NoInstance, UnknownPlugin
from kong_plugin.pluginserver.peers import Peers

log = logging.getLogger("strata.pluginserver")

#: Event ids are ``sequence * MAX_WORKERS + worker index``.
MAX_WORKERS = 64
#: Threads that run `blocking` calls (sidecar lookups and stores) per worker, and as many
#: again for the parked ones (lookups waiting for another request's fill): with one pool,
#: 32 waiting lookups for one key took every thread and the store that would have woken
#: them queued behind them until their wait ran out (`python -m bench stampede`, N = 64).
BLOCKING_THREADS = 32
SWEEP_S = 10.0
#: An event still waiting for Kong's next Step after this long is abandoned (Kong gives up
#: on an RPC after 60 s): its greenlet is ended so that it does not hold memory forever.
EVENT_TTL_S = 300.0

Reply = Callable[[Any, Any], None]
#: The supervisor's request for a worker's metrics, on the worker's private socket only.
METRICS_METHOD = "strata.Metrics"


def plugin_info(module: Module) -> dict[str, Any]:
    """What ``--dump`` prints (in a one-element list) and ``GetPluginInfo`` answers."""
    return {
        "Name": module.name,
        "Phases": module.phases,
        "Priority": module.priority,
        "Version": module.version,
        "Schema": {
            "name": module.name,
            "fields": [{"config": {"type": "record", "fields": module.schema}}],
        },
    }


class Worker:
    """The RPC methods of one worker process."""

    def __init__(
        self, module: Module, registry: Path, index: int, count: int, socket_path: str
    ) -> None:
        if not 0 <= index < count <= MAX_WORKERS:
            raise ValueError(f"worker {index} of {count}: at most {MAX_WORKERS} workers")
        self.module = module
        self.instances = Instances(module, registry)
        self.index = index
        self.count = count
        self.socket_path = socket_path
        self.events: dict[int, Event] = {}
        self._seq = itertools.count(1)
        self._pool = ThreadPoolExecutor(BLOCKING_THREADS, thread_name_prefix="strata-blocking")
        self._parked = ThreadPoolExecutor(BLOCKING_THREADS, thread_name_prefix="strata-parked")
        self._relays: dict[int, list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}
        self._relay_ids = itertools.count(1)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.relayed = 0
        #: Notices to and from the other workers (`kong_plugin.pluginserver.peers`).
        self.peers = Peers(index, count, lambda i: relay_path(socket_path, i))
        #: This worker's metrics, for `METRICS_METHOD` (None: it has none to give).
        self.snapshot: Callable[[], Any] | None = None

    def metrics(self, reply: Reply) -> None:
        """Answer `METRICS_METHOD` with `snapshot`'s mapping (an error text if none)."""
        if self.snapshot is None:
            reply("no metrics in this worker", None)
            return
        try:
            answer = self.snapshot()
        except Exception as exc:
            log.exception("metrics snapshot failed")
            reply(f"metrics snapshot failed: {exc!r}", None)
            return
        reply(None, answer)

    # -- dispatch ------------------------------------------------------------------------

    def call(self, method: Any, args: Any, reply: Reply) -> None:
        """Run one RPC; `reply(err, result)` is called exactly once, now or later."""
        ns, _, cmd = method.partition(".") if isinstance(method, str) else ("", "", "")
        if ns != "plugin":
            reply(f"RPC for {ns} is not supported", None)
            return
        param = args[0] if isinstance(args, list | tuple) and args else None
        try:
            if cmd == "HandleEvent":
                self._handle_event(param, reply)
            elif cmd.startswith("Step"):
                self._step(method, args, param, cmd == "StepError", reply)
            else:
                reply(None, self._simple(cmd, param))
        except (NoInstance, UnknownPlugin, KeyError, ValueError, TypeError) as exc:
            reply(str(exc), None)
        except Exception as exc:
            log.exception("rpc %s failed", method)
            reply(str(exc), None)

    def _simple(self, cmd: str, param: Any) -> Any:
        if cmd == "StartInstance":
            return self.instances.start(param)
        if cmd == "CloseInstance":
            return self.instances.close(param)
        if cmd == "InstanceStatus":
            return self.instances.status(param)
        if cmd == "GetPluginInfo":
            if param != self.module.name:
                raise UnknownPlugin(param)
            return plugin_info(self.module)
        if cmd == "GetStatus":
            m = self.module
            return {
                "Pid": os.getpid(),
                # not kong-pdk's: this worker's index and the Steps it relayed to another
                "Worker": self.index,
                "Relayed": self.relayed,
                "Plugins": {
                    m.name: {
                        "Name": m.name,
                        "Modtime": m.mtime,
                        "LoadTime": m.load_time,
                        "Instances": self.instances.all_status(),
                        "LastStartInstance": m.last_start_instance_time,
                        "LastCloseInstance": m.last_close_instance_time,
                    }
                },
            }
        if cmd == "SetPluginDir":
            if not isinstance(param, str) or not os.path.exists(param):
                raise ValueError(f"{param} not exists")
            return "ok"
        raise ValueError(f"unknown method plugin.{cmd}")

    def _handle_event(self, param: Any, reply: Reply) -> None:
        if not isinstance(param, dict):
            raise TypeError("HandleEvent expects {InstanceId, EventName}")
        instance = self.instances.get(param.get("InstanceId"))
        phase = param.get("EventName")
        handler = None
        if isinstance(phase, str) and not phase.startswith("_"):
            handler = getattr(instance.plugin, phase, None)
        if handler is None:
            raise ValueError(f"no phase {phase!r} in plugin {instance.name}")
        eid = next(self._seq) * MAX_WORKERS + self.index
        event = Event(handler, eid, str(phase))
        self._advance(event, event.start(), reply)

    def _step(self, method: str, args: Any, param: Any, is_error: bool, reply: Reply) -> None:
        if not isinstance(param, dict):
            raise TypeError("Step expects {EventId, Data}")
        eid = param.get("EventId")
        event = self.events.get(eid) if isinstance(eid, int) else None
        if event is None:
            owner = eid % MAX_WORKERS if isinstance(eid, int) and eid >= 0 else self.index
            if owner != self.index and owner < self.count and self.loop is not None:
                self.relayed += 1
                self.loop.create_task(self._relay(owner, method, args, eid, reply))
                return
            reply(f"event id {eid} not found", None)
            return
        data = param.get("Data")
        self._advance(event, event.feed((None, data) if is_error else (data, None)), reply)

    def _advance(self, event: Event, out: Yielded, reply: Reply | None) -> None:
        """Act on what `event` handed back; `reply` is None once Kong got its last answer."""
        eid = event.event_id
        if out.kind == "call":
            self.events[eid] = event
            if reply is not None:
                reply(None, {"Data": out.payload, "EventId": eid})
        elif out.kind == "exit":
            self.events.pop(eid, None)
            if reply is not None:
                reply(None, {"Data": out.payload, "EventId": eid})
            self._soon(lambda: self._advance(event, event.feed((None, None)), None))
        elif out.kind in ("wait", "park"):
            self.events.pop(eid, None)  # parked: Kong waits on this RPC, sends no Step
            pool = self._parked if out.kind == "park" else self._pool
            self._run_blocking(event, out.payload, reply, pool)
        else:  # ret or fail: the event is over
            self.events.pop(eid, None)
            if reply is not None:
                reply(None, {"Data": "ret", "EventId": eid})

    def _run_blocking(
        self, event: Event, fn: Callable[[], Any], reply: Reply | None, pool: ThreadPoolExecutor
    ) -> None:
        loop = self.loop
        if loop is None:  # no loop (direct use in tests): run it here
            self._advance(event, event.feed(_outcome(fn)), reply)
            return
        future = pool.submit(fn)

        def done(f: Future[Any]) -> None:
            exc = f.exception()
            outcome = (False, exc) if exc is not None else (True, f.result())
            loop.call_soon_threadsafe(lambda: self._advance(event, event.feed(outcome), reply))

        future.add_done_callback(done)

    def _soon(self, fn: Callable[[], None]) -> None:
        if self.loop is None:
            fn()
        else:
            self.loop.call_soon(fn)

    # -- relay ---------------------------------------------------------------------------

    async def _relay(self, owner: int, method: str, args: Any, eid: Any, reply: Reply) -> None:
        """Forward a Step for another worker's event to that worker and pass its answer
        back; an unreachable owner is Kong's ``event id N not found``."""
        idle = self._relays.setdefault(owner, [])
        writer: asyncio.StreamWriter | None = None
        try:
            if idle:
                reader, writer = idle.pop()
            else:
                reader, writer = await asyncio.open_unix_connection(
                    relay_path(self.socket_path, owner)
                )
            rid = next(self._relay_ids)
            writer.write(PACKER.pack([0, rid, method, args]))
            unpacker = new_unpacker()
            while True:
                chunk = await asyncio.wait_for(reader.read(65536), 60.0)
                if not chunk:
                    raise ConnectionError("relay connection closed")
                unpacker.feed(chunk)
                answer = next(iter(unpacker), None)
                if answer is not None:
                    break
            idle.append((reader, writer))
            _, _, err, result = answer
            reply(err, result)
        except Exception as exc:
            if writer is not None:  # half used: never back to the pool
                writer.close()
            log.warning("relaying event %s to worker %d failed: %r", eid, owner, exc)
            reply(f"event id {eid} not found (worker {owner}: {exc})", None)

    # -- housekeeping --------------------------------------------------------------------

    def close(self) -> None:
        """Close the relay connections and stop the blocking pools (no wait)."""
        for idle in self._relays.values():
            while idle:
                idle.pop()[1].close()
        self.peers.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._parked.shutdown(wait=False, cancel_futures=True)

    async def sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            with contextlib.suppress(OSError):
                self.instances.sweep()
            self.end_abandoned(time.monotonic() - EVENT_TTL_S)

    def end_abandoned(self, started_before: float) -> int:
        """End the events waiting for a Step since before `started_before` (Kong will never
        send it: its connection died or it timed out); returns how many."""
        old = [e for e in self.events.values() if e.started_at < started_before]
        for event in old:
            self.events.pop(event.event_id, None)
            with contextlib.suppress(Exception):
                event.throw(greenlet.GreenletExit)
        if old:
            log.warning("ended %d plugin events Kong abandoned", len(old))
        return len(old)


def _outcome(fn: Callable[[], Any]) -> tuple[bool, Any]:
    try:
        return True, fn()
    except Exception as exc:
        return False, exc


def relay_path(socket_path: str, index: int) -> str:
    """The private socket worker `index` listens on for its peers."""
    return f"{socket_path}.w{index}"

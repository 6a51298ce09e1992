"""One plugin event (a phase run for one request) as a greenlet on the worker's loop.

kong-pdk's thread mode starts a thread per event and crosses two queues (two thread
switches) for every PDK call. Here the phase method runs in a greenlet of the worker's one
thread: a PDK call switches back to the loop with the call (the answer to Kong's pending
``HandleEvent``/``Step``), and Kong's next ``Step`` switches into the greenlet with the
answer. No thread, no lock, no queue on the PDK path.

The PDK object the plugin sees is kong-pdk's own (`kong_pdk.pdk.Kong`, Lua style: every
call returns ``(data, err)``), driven through `Channel` instead of kong-pdk's queues, so the
calls and their wire shapes are exactly kong-pdk's.

Blocking work (a gRPC call to the sidecar) must not run on the loop: `blocking` hands it to
the worker's thread pool and parks the event's greenlet until it is done; outside an event
(tests, kong-pdk's own server) it just calls the function.

An event ends in one of three ways, each a `Yielded` the loop acts on: ``ret`` (the phase
returned), ``exit`` (``kong.response.exit``/``error``: Kong sends nothing more for it; the
greenlet is resumed once more so that the phase can return), or ``fail`` (the phase
raised; kong-pdk would leave Kong waiting 60 s for an answer, here Kong gets ``ret`` at
once and the traceback is logged).

Timings (`timers`, set by `kong_plugin.plugin_metrics.install`): each PDK round trip an
event waits for (from handing the call to the loop to Kong's answer switching back in; a
terminal ``exit`` has no answer and is not timed) and each phase run (start to return), by
the event's phase name.

Not guaranteed: that a phase which calls the PDK after ``kong.response.exit`` gets an
answer -- kong-pdk blocks it forever; here `PdkAfterExit` is raised into it. A PDK wait
includes the time the loop spent on other events before it read Kong's answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import greenlet
from kong_pdk.pdk import Kong

log = logging.getLogger("strata.pluginserver")

T = TypeVar("T")

TERMINAL_METHODS = frozenset(("kong.response.exit", "kong.response.error"))


class Timers(NamedTuple):
    """Where timings go: ``pdk(phase, seconds)`` per PDK round trip, ``phase(phase,
    seconds)`` per phase run. Called on the worker's loop thread; must not block."""

    pdk: Callable[[str, float], None]
    phase: Callable[[str, float], None]


#: The process's timers (None: nothing is timed).
timers: Timers | None = None


class PdkAfterExit(Exception):  # noqa: N818  (it names the situation, as kong-pdk's do)
    """A phase called the PDK after it ended the request with ``kong.response.exit``."""


@dataclass(frozen=True, slots=True)
class Yielded:
    """What an event hands back to the loop: ``kind`` is ``call`` (a PDK call to send to
    Kong), ``exit`` (a terminal PDK call), ``wait`` or ``park`` (`payload` is a function to
    run off the loop; ``park``: one that may wait on another request), ``ret`` (the phase
    returned) or ``fail`` (`payload` is the exception)."""

    kind: str
    payload: Any = None


class Channel:
    """kong-pdk's event channel (``put`` a message, ``get`` the answer), over greenlets."""

    __slots__ = ("_answer",)

    def __init__(self) -> None:
        self._answer: Any = (None, None)

    def put(self, message: dict[str, Any]) -> None:
        current = greenlet.getcurrent()
        kind = "exit" if message.get("Method") in TERMINAL_METHODS else "call"
        timing = timers
        if timing is None or kind == "exit":
            answer = current.parent.switch(Yielded(kind, message))
        else:
            sent = time.perf_counter()
            answer = current.parent.switch(Yielded(kind, message))
            timing.pdk(current.phase, time.perf_counter() - sent)
        if isinstance(answer, PdkAfterExit):
            raise answer
        self._answer = answer

    def get(self) -> Any:
        return self._answer


class Event(greenlet.greenlet):  # type: ignore[misc]
    """One phase run: `start` runs it to its first message, `feed` hands it an answer
    (a PDK call's ``(data, err)``, or a `blocking` call's ``(ok, value)``).

    Both return the next `Yielded`. Once an ``exit`` was handed out (`exited`), Kong sends
    nothing more: the loop feeds ``(None, None)`` so the phase runs on to its return, and
    any PDK call it still makes gets `PdkAfterExit` instead of surfacing."""

    strata_event = True

    def __init__(self, handler: Callable[[Any], None], event_id: int, phase: str = "other") -> None:
        super().__init__(self._main)
        self.event_id = event_id
        self.exited = False
        self.started_at = time.monotonic()
        #: The phase's name (``access``, ``response``, ``log``), for the timings.
        self.phase = phase
        self._handler = handler

    def _main(self) -> Yielded:
        kong = Kong(Channel(), lua_style=True).kong
        began = time.perf_counter()
        try:
            self._handler(kong)
        except PdkAfterExit as exc:
            log.error("event %s: %s", self.event_id, exc)  # noqa: TRY400
            return Yielded("ret")
        except Exception as exc:
            log.exception("event %s: phase handler raised", self.event_id)
            return Yielded("fail", exc)
        finally:
            timing = timers
            if timing is not None:
                timing.phase(self.phase, time.perf_counter() - began)
        return Yielded("ret")

    def start(self) -> Yielded:
        return self._next(self.switch())

    def feed(self, answer: Any) -> Yielded:
        return self._next(self.switch(answer))

    def _next(self, out: Any) -> Yielded:
        while True:
            if not isinstance(out, Yielded):  # pragma: no cover - only a foreign switch
                return Yielded("fail", RuntimeError(f"unexpected switch value {out!r:.80}"))
            if out.kind in ("call", "exit") and self.exited:
                method = out.payload.get("Method") if isinstance(out.payload, dict) else None
                out = self.switch(PdkAfterExit(f"PDK call {method} after kong.response.exit"))
                continue
            if out.kind == "exit":
                self.exited = True
            return out


def blocking(fn: Callable[[], T], parked: bool = False) -> T:
    """Run `fn` off the loop when called inside an event, else call it here.

    Inside an event the greenlet parks until the worker's pool ran `fn`; the result (or
    the exception) comes back here. `parked`: `fn` may wait on another request (a lookup
    waiting for the fill of the request that leads a stampede); such calls run on a pool
    of their own, so however many wait, the call they wait for (that request's store) is
    never queued behind them. Not guaranteed: ordering between two events' blocking
    calls."""
    current = greenlet.getcurrent()
    if not getattr(current, "strata_event", False):
        return fn()
    ok, value = current.parent.switch(Yielded("park" if parked else "wait", fn))
    if ok:
        return value  # type: ignore[no-any-return]
    raise value

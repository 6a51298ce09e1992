"""Per-request statistics (RPCs and PDK callbacks per plugin event) and strict-mode errors.

Every proxied request gets a :class:`RequestRecord`; each plugin event in it an
:class:`EventRecord` with the number of RPCs sent to the plugin server (``StartInstance``,
``CloseInstance``, ``HandleEvent`` and each ``Step*``) and the PDK methods the plugin called (one
``Step`` round trip each, except the terminal ``kong.response.exit``/``error``).

"Issues" are what Kong would only log (an RPC error, a timeout, an unknown PDK method, a
malformed message) plus hard errors Kong turns into a 500; in strict mode any issue during a
request makes it fail (500 with an ``X-Kongsim-Error`` header). Warnings (for example a ``nil``
argument that Lua's ``unpack`` silently drops) are recorded but never fail a request.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Issue:
    """One problem, with where it happened."""

    kind: str
    """``rpc_error``, ``rpc_timeout``, ``rpc_transport``, ``protocol``, ``unknown_pdk_method``,
    ``lua_error``, ``start_instance``, ``instance_restart``, ``plugin_server``."""
    message: str
    plugin: str | None = None
    phase: str | None = None
    request_id: str | None = None
    at: float = field(default_factory=time.time)

    def describe(self) -> str:
        where = "/".join(x for x in (self.plugin, self.phase) if x)
        return f"{self.kind}{f' ({where})' if where else ''}: {self.message}"


@dataclass
class EventRecord:
    """One ``HandleEvent`` (plus its Steps) of one plugin in one phase."""

    plugin: str
    phase: str
    instance_id: int | None = None
    rpcs: int = 0
    rpc_methods: list[str] = field(default_factory=list)
    """Every RPC sent for this event, in order (``plugin.StartInstance``, ``plugin.Step``...)."""
    pdk_calls: list[str] = field(default_factory=list)
    outcome: str = "ret"
    """``ret`` (handler returned), ``exit`` (terminal callback), ``error`` (see ``issues``)."""
    duration_ms: float = 0.0

    @property
    def step_round_trips(self) -> int:
        """PDK callbacks answered with a ``Step`` (the terminal ones are not answered)."""
        return sum(1 for m in self.pdk_calls if m not in _TERMINAL)


_TERMINAL = frozenset({"kong.response.exit", "kong.response.error"})


@dataclass
class RequestRecord:
    """Everything kongsim noted about one request."""

    request_id: str
    method: str
    path: str
    started_at: float = field(default_factory=time.time)
    route: str | None = None
    status: int | None = None
    events: list[EventRecord] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    """Set once the ``log`` phase (if any) has finished."""

    @property
    def rpc_count(self) -> int:
        return sum(e.rpcs for e in self.events)

    @property
    def pdk_call_count(self) -> int:
        return sum(len(e.pdk_calls) for e in self.events)

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "method": self.method,
            "path": self.path,
            "route": self.route,
            "status": self.status,
            "started_at": self.started_at,
            "complete": self.done.is_set(),
            "rpc_count": self.rpc_count,
            "pdk_call_count": self.pdk_call_count,
            "step_round_trips": sum(e.step_round_trips for e in self.events),
            "events": [{**asdict(e), "step_round_trips": e.step_round_trips} for e in self.events],
            "issues": [asdict(i) for i in self.issues],
            "warnings": list(self.warnings),
        }


class Recorder:
    """Keeps the last ``keep`` request records and every issue since the last :meth:`clear`."""

    def __init__(self, keep: int = 1000) -> None:
        self.requests: deque[RequestRecord] = deque(maxlen=keep)
        self.issues: list[Issue] = []
        self.warnings: list[str] = []

    def start(self, request_id: str, method: str, path: str) -> RequestRecord:
        record = RequestRecord(request_id, method, path)
        self.requests.append(record)
        return record

    def issue(self, record: RequestRecord | None, issue: Issue) -> None:
        if record is not None:
            issue.request_id = record.request_id
            record.issues.append(issue)
        self.issues.append(issue)

    def warn(self, record: RequestRecord | None, message: str) -> None:
        if record is not None:
            record.warnings.append(message)
        self.warnings.append(message)

    def last(self) -> RequestRecord | None:
        return self.requests[-1] if self.requests else None

    def find(self, request_id: str) -> RequestRecord | None:
        return next((r for r in reversed(self.requests) if r.request_id == request_id), None)

    def clear(self) -> None:
        self.requests.clear()
        self.issues.clear()
        self.warnings.clear()

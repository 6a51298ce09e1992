"""Per-request state: what Kong keeps in ``ngx.var``/``ngx.ctx`` for one proxied request.

The PDK answers (:mod:`kongsim.pdk`), key-auth (:mod:`kongsim.http.keyauth`) and the proxy
(:mod:`kongsim.http.proxy`) all read and write one :class:`RequestState`.

Request changes made by plugins (``kong.service.request.*``) change the request itself, as
Kong's ``ngx.req.set_header``/``ngx.req.set_uri_args`` do: :attr:`RequestState.headers` and
:attr:`RequestState.raw_query` are the request as later plugins and the upstream see it;
``$request`` and ``$request_uri`` keep the original request line.

Response headers follow a simplified model of nginx's ``ngx.header``: changes made by plugins
before the upstream answered (``rewrite``/``access``) are recorded as operations and replayed on
top of the upstream headers when streaming (plugin wins); with buffered proxying Kong copies the
upstream headers over them with ``kong.response.set_headers`` (upstream wins for headers both
set), and ``response``-phase changes apply last.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from multidict import CIMultiDict

from kongsim.config.entities import Consumer, KeyCredential, Route, Service
from kongsim.request.router import RouteMatch

HeaderOp = tuple[str, str, list[str]]
"""``("set" | "add" | "clear", name, values)``."""


@dataclass
class Terminal:
    """A response produced by Kong instead of the upstream (``kong.response.exit``/``error``).

    ``headers`` replace the response's current values of those names (Kong's ``send`` sets
    ``ngx.header[name]`` for each name it is given; other names keep their current values,
    in the ``response`` phase the upstream's); ``cleared`` names are removed (a header value
    given as an empty array: ``ngx.header[name] = {}``). ``Content-Length`` is among
    ``headers`` exactly as Kong's ``send`` sets it (``#body`` unless the caller gave one), or
    in ``cleared``.
    """

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    source: str = "exit"
    cleared: frozenset[str] = frozenset()


@dataclass
class RequestState:
    """Everything one request needs from arrival to the ``log`` phase."""

    # --- the downstream request, as received ----------------------------------------------------
    method: str
    request_uri: str
    """Path and query exactly as received (nginx ``$request_uri``)."""
    headers: CIMultiDict[str]
    """The request headers *now*: ``kong.service.request.set_header``/``clear_header`` and
    the auth plugins change them in place (``ngx.req.set_header``), so later plugins see the
    change in ``kong.request.get_headers()`` and the upstream receives it
    (``kong/pdk/service/request.lua``)."""
    body: bytes
    client_ip: str
    client_port: int
    server_port: int
    http_version: float = 1.1
    scheme: str = "http"
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    start_time: float = field(default_factory=time.time)

    # --- routing ---------------------------------------------------------------------------------
    match: RouteMatch | None = None
    consumer: dict[str, Any] | None = None
    credential: dict[str, Any] | None = None

    # --- Kong context ----------------------------------------------------------------------------
    phase: str = "rewrite"
    in_timer: bool = False
    """True while the ``log`` phase runs (Kong runs external plugins' log in a timer)."""
    ctx_shared: dict[str, Any] = field(default_factory=dict)
    nginx_ctx: dict[str, Any] = field(default_factory=dict)
    exited: bool = False
    unexpected: bool = False
    proxied: bool = False
    upstream_failed: bool = False

    # --- the upstream request (kong.service.request.*) -------------------------------------------
    upstream_method: str | None = None
    upstream_path: str | None = None
    args: str | None = None
    """nginx ``$args`` once a plugin changed it (``kong.service.request.set_raw_query``,
    ``set_query``, ``clear_query_arg``: ``ngx.req.set_uri_args`` / ``ngx.var.args``);
    ``None``: the client's query. Read through :attr:`raw_query`."""
    upstream_host: str | None = None
    upstream_body: bytes | None = None
    buffering: bool = False
    """Buffered proxying (a plugin has a ``response`` handler, or ``enable_buffering()``)."""
    forwarded_prefix: str | None = None

    # --- the downstream response (kong.response.*) -----------------------------------------------
    response_status: int | None = None
    response_headers: CIMultiDict[str] = field(default_factory=CIMultiDict)
    early_header_ops: list[HeaderOp] = field(default_factory=list)

    # --- the upstream response (kong.service.response.*) -----------------------------------------
    service_status: int | None = None
    service_headers: CIMultiDict[str] | None = None
    service_body: bytes | None = None

    # --- timings (ms since epoch) ----------------------------------------------------------------
    upstream_start: float | None = None
    upstream_headers_at: float | None = None
    response_sent_at: float | None = None

    @property
    def start_ms(self) -> int:
        return int(self.start_time * 1000)

    @property
    def route(self) -> Route | None:
        return self.match.route if self.match else None

    @property
    def service(self) -> Service | None:
        return self.match.service if self.match else None

    @property
    def raw_path(self) -> str:
        return self.request_uri.split("?", 1)[0]

    @property
    def raw_query(self) -> str:
        """nginx ``$args`` now: the client's query unless a plugin changed it (Kong's
        ``kong.request.get_raw_query`` and the upstream request both read it)."""
        if self.args is not None:
            return self.args
        return self.request_uri.split("?", 1)[1] if "?" in self.request_uri else ""

    @property
    def host_header(self) -> str | None:
        return self.headers.get("host")

    @property
    def host(self) -> str:
        """nginx ``$host``: the Host header's name, lower-cased, without port."""
        value = (self.host_header or "").strip().lower()
        if value.startswith("["):
            return value[: value.find("]") + 1]
        return value.split(":", 1)[0] if value.count(":") == 1 else value

    def authenticate(
        self,
        consumer: Consumer | dict[str, Any] | None,
        credential: KeyCredential | dict[str, Any] | None,
    ) -> None:
        self.consumer = consumer.entity() if isinstance(consumer, Consumer) else consumer
        self.credential = (
            credential.entity() if isinstance(credential, KeyCredential) else credential
        )

    # --- response header operations --------------------------------------------------------------

    def response_header_op(self, op: str, name: str, values: list[str]) -> None:
        """Apply a ``kong.response.*`` header change now, and remember it if pre-upstream."""
        apply_header_op(self.response_headers, op, name, values)
        if self.phase in ("rewrite", "access"):
            self.early_header_ops.append((op, name, values))


def apply_header_op(headers: CIMultiDict[str], op: str, name: str, values: Iterable[str]) -> None:
    if op in ("set", "clear"):
        headers.popall(name, None)
    if op in ("set", "add"):
        for v in values:
            headers.add(name, v)

"""The HTTP side: Kong's phases for each request, in Kong's order, and the proxying itself.

For one request (Kong 3.9 ``kong/init.lua``):

1. ``rewrite``: global plugins only, by priority; an exit answers at once.
2. Routing; no match → 404 ``no Route matched with those values``.
3. ``access``: the collecting iterator. For each plugin by priority, the config that applies is
   looked up *now* (so a consumer authenticated by key-auth, priority 1250, selects
   consumer-scoped configs of lower-priority plugins); its ``response``/``log`` handlers are
   collected; its ``access`` handler runs unless a response is already pending. The first exit
   becomes the response after the loop (Kong's delayed response); a hard error becomes 500
   ``An unexpected error occurred``.
4. A route without service → 503 ``no Service found with those values``.
5. Proxy. If a collected plugin has a ``response`` handler (or one called
   ``kong.service.request.enable_buffering``), the whole upstream response is read first, the
   ``response`` handlers run (they may change status/headers or exit with a new body; Kong then
   sends the *original* body unless they exit), then the response is sent. Otherwise it streams.
   Unreachable upstream → 502, timeout → 504 (Kong's error handler format).
6. ``log``: after the response is sent, each collected log handler in its own task (Kong: one
   timer each), never delaying the client.

Kong's response headers: proxied responses get ``Via: 1.1 kong/3.9.3``, ``X-Kong-Upstream-Latency``,
``X-Kong-Proxy-Latency`` and ``Server: kong/3.9.3`` if the upstream sent none; responses Kong
produced get ``Server`` and ``X-Kong-Response-Latency``; all get ``X-Kong-Request-Id``.

Strict mode: any issue (see :mod:`kongsim.recorder`) recorded during ``rewrite``, ``access`` or
``response`` replaces the response with a 500 whose ``X-Kongsim-Error`` header describes it.

NOT emulated: ``header_filter``/``body_filter`` phases, request buffering options, HTTPS
redirects, gRPC, WebSockets, ``X-Kong-Upstream-Status``, nginx's size limits on headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import hdrs, web
from multidict import CIMultiDict
from yarl import URL

from kongsim import keyauth, upstream
from kongsim.bridge import Worker
from kongsim.errors import LuaError
from kongsim.pdk import SERVER_HEADER, error_response, http_error_message
from kongsim.pdk.codec import multimap_headers
from kongsim.plugins import ConfiguredPlugin
from kongsim.recorder import Issue, RequestRecord
from kongsim.state import RequestState, Terminal
from kongsim.uri import normalize

if TYPE_CHECKING:
    from kongsim.gateway import Gateway, Runtime

log = logging.getLogger("kongsim.proxy")

KONGSIM_ERROR_HEADER = "X-Kongsim-Error"
UNEXPECTED = "An unexpected error occurred"


class KongResponse(web.StreamResponse):
    """A StreamResponse that, like nginx with ``default_type ''``, invents no Content-Type, and
    sends a ``Content-Length`` on a 304 when one was set (nginx's header filter keeps it; aiohttp
    would drop it)."""

    async def _prepare_headers(self) -> None:
        had_type = hdrs.CONTENT_TYPE in self.headers
        length = self.headers.get(hdrs.CONTENT_LENGTH) if self.status == 304 else None
        await super()._prepare_headers()
        if not had_type:
            self.headers.popall(hdrs.CONTENT_TYPE, None)
        if length is not None:
            self.headers[hdrs.CONTENT_LENGTH] = length


#: nginx's ``large_client_header_buffers`` default (Kong does not set it): 4 buffers of 8k.
CLIENT_HEADER_LINE_MAX = 8192
CLIENT_HEADER_BLOCK_MAX = 4 * 8192
#: nginx's ``proxy_buffer_size`` default, one memory page (Kong does not set it): the
#: upstream's status line and headers must fit in it.
UPSTREAM_HEADER_BLOCK_MAX = 4096


def _line(name: bytes, value: bytes) -> int:
    return len(name) + 2 + len(value) + 2  # "name: value\r\n"


def client_headers_too_large(request_line: int, raw: Sequence[tuple[bytes, bytes]]) -> bool:
    """nginx answers 494 (Kong's error handler turns it into 400 "Request header or cookie too
    large") when one header line does not fit a large buffer or all of them do not fit the
    four (approximated on the byte count; nginx's buffer accounting differs in detail)."""
    lines = [_line(k, v) for k, v in raw]
    return any(n > CLIENT_HEADER_LINE_MAX for n in lines) or (
        request_line + sum(lines) > CLIENT_HEADER_BLOCK_MAX
    )


def upstream_headers_too_large(status_line: int, raw: Sequence[tuple[bytes, bytes]]) -> bool:
    """nginx: "upstream sent too big header while reading response header from upstream",
    a 502, when the status line and headers do not fit ``proxy_buffer_size``."""
    return status_line + sum(_line(k, v) for k, v in raw) + 2 > UPSTREAM_HEADER_BLOCK_MAX


def nginx_header_filter(status: int, headers: CIMultiDict[str]) -> CIMultiDict[str]:
    """What nginx's ``ngx_http_header_filter`` does to headers set through ``ngx.header``
    (exits, and buffered responses Kong copied with ``kong.response.set_headers``): a 204 loses
    ``Content-Type``, ``Last-Modified`` and ``Content-Length``; a ``Last-Modified`` on any status
    but 200, 206 and 304 is dropped."""
    if status == 204:
        for name in ("content-type", "last-modified", "content-length"):
            headers.popall(name, None)
    elif status not in (200, 206, 304):
        headers.popall("last-modified", None)
    return headers


@dataclass
class _Ctx:
    rt: Runtime
    worker: Worker
    st: RequestState
    record: RequestRecord
    request: web.BaseRequest
    response_plugins: list[ConfiguredPlugin] = field(default_factory=list)
    log_plugins: list[ConfiguredPlugin] = field(default_factory=list)


class Proxy:
    """Handles every non-admin request of the kongsim listener."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        sock = request.transport.get_extra_info("sockname") if request.transport else None
        body = await request.content.read()
        st = RequestState(
            method=request.method,
            request_uri=request.raw_path,
            headers=CIMultiDict(request.headers),
            body=body,
            client_ip=peer[0] if peer else "127.0.0.1",
            client_port=peer[1] if peer else 0,
            server_port=sock[1] if sock else 0,
            http_version=request.version.major + request.version.minor / 10,
        )
        record = self.gw.recorder.start(st.request_id, st.method, st.request_uri)
        ctx = _Ctx(self.gw.runtime, self.gw.next_worker(), st, record, request)
        request_line = len(request.method) + len(request.raw_path) + len(" HTTP/1.1\r\n") + 1
        try:
            if client_headers_too_large(request_line, request.raw_headers):
                # nginx refuses it before any phase: error_page 494 -> Kong's handler -> 400
                terminal = error_response(
                    st, 400, http_error_message(494), source="error", accept=None
                )
                response = await self._send_terminal(ctx, terminal)
                record.status = st.response_status
                record.done.set()
                return response
            response = await self._pipeline(ctx)
        except ConnectionError:
            # the client went away (nginx logs status 499); Kong still runs the log phase
            log.info("client closed the connection: %s %s", st.method, st.request_uri)
            st.response_status = st.response_status or 499
            record.status = st.response_status
            self._schedule_log(ctx)
            raise
        except Exception as exc:
            log.exception("kongsim failed on %s %s", st.method, st.request_uri)
            self.gw.recorder.issue(record, Issue("kongsim_bug", repr(exc)))
            record.done.set()
            raise
        record.status = st.response_status
        self._schedule_log(ctx)
        return response

    # --- phases ------------------------------------------------------------------------------

    async def _pipeline(self, ctx: _Ctx) -> web.StreamResponse:
        st, rt = ctx.st, ctx.rt
        st.phase = "rewrite"
        ctx.log_plugins = list(rt.plugins.globals_with("log"))
        for cp in rt.plugins.globals_with("rewrite"):
            terminal = await self._run_plugin(ctx, cp)
            if terminal is not None:
                return await self._send_terminal(ctx, self._strict_failure(ctx) or terminal)
        if failure := self._strict_failure(ctx):
            return await self._send_terminal(ctx, failure)

        st.phase = "access"
        st.match = rt.router.match(
            st.method,
            st.host_header,
            normalize(st.raw_path, True),
            multimap_headers(st.headers, 1000),
            st.server_port,
        )
        if st.match is None:
            return await self._send_terminal(
                ctx, error_response(st, 404, "no Route matched with those values")
            )
        ctx.record.route = st.match.route.name or st.match.route.id
        ctx.log_plugins = []
        delayed = await self._access(ctx)
        if failure := self._strict_failure(ctx):
            return await self._send_terminal(ctx, failure)
        if delayed is not None:
            return await self._send_terminal(ctx, delayed)
        if st.match.service is None:
            return await self._send_terminal(
                ctx, error_response(st, 503, "no Service found with those values")
            )
        return await self._proxy(ctx)

    async def _access(self, ctx: _Ctx) -> Terminal | None:
        st, rt = ctx.st, ctx.rt
        route, service = st.route, st.service
        delayed: Terminal | None = None
        for info in rt.plugins.ordered:
            consumer_id = st.consumer.get("id") if st.consumer else None
            cp = rt.plugins.lookup(
                info.name,
                route.id if route else None,
                service.id if service else None,
                consumer_id,
            )
            if cp is None:
                continue
            if info.has_phase("response"):
                ctx.response_plugins.append(cp)
                st.buffering = True
            if info.has_phase("log"):
                ctx.log_plugins.append(cp)
            if info.has_phase("access") and delayed is None:
                delayed = await self._run_plugin(ctx, cp)
        return delayed

    async def _run_plugin(self, ctx: _Ctx, cp: ConfiguredPlugin) -> Terminal | None:
        """Run the current phase of one plugin; a hard error becomes Kong's 500."""
        st = ctx.st
        try:
            if not cp.info.external:
                return keyauth.access(st, cp.config, ctx.rt.decl)
            return await self.gw.bridge.run(
                ctx.worker, cp, st=st, record=ctx.record, env=ctx.rt.env
            )
        except LuaError:
            st.unexpected = True
            return error_response(st, 500, UNEXPECTED, source="error")

    def _strict_failure(self, ctx: _Ctx) -> Terminal | None:
        issues = ctx.record.issues
        if not self.gw.strict or not issues:
            return None
        first = issues[0].describe()
        more = f" (+{len(issues) - 1} more)" if len(issues) > 1 else ""
        header = (first + more).replace("\r", " ").replace("\n", " ")
        header = header.encode("ascii", "replace").decode("ascii")[:1000]
        body = json.dumps(
            {
                "message": f"kongsim strict mode: {first}{more}",
                "issues": [i.describe() for i in issues],
                "request_id": ctx.st.request_id,
            }
        ).encode()
        ctx.st.unexpected = True
        return Terminal(
            500,
            body,
            [
                ("Content-Type", "application/json; charset=utf-8"),
                ("Content-Length", str(len(body))),
                (KONGSIM_ERROR_HEADER, header),
            ],
            source="error",
        )

    # --- responses ---------------------------------------------------------------------------

    async def _send_terminal(self, ctx: _Ctx, terminal: Terminal) -> web.StreamResponse:
        st = ctx.st
        if terminal.source == "exit":
            st.exited = True
        headers = CIMultiDict(st.response_headers)
        for name in {k.lower() for k, _ in terminal.headers} | terminal.cleared:
            headers.popall(name, None)
        headers.extend(terminal.headers)
        if st.proxied:
            # Kong's header_filter looks at KONG_PROXIED, set before the upstream call
            headers = self._proxied_headers(ctx, headers)
        else:
            if headers.get("Via") != SERVER_HEADER:
                headers["Server"] = SERVER_HEADER
            headers["X-Kong-Response-Latency"] = str(int(time.time() * 1000 - st.start_ms))
            headers["X-Kong-Request-Id"] = st.request_id
        return await self._send(ctx, terminal.status, headers, terminal.body)

    async def _send(
        self, ctx: _Ctx, status: int, headers: CIMultiDict[str], body: bytes
    ) -> web.StreamResponse:
        """Send a response whose headers were set through ``ngx.header``. ``Content-Length`` is
        sent as set (an exit's is Kong's choice, see :class:`Terminal`); without one, the body
        goes out chunked, as nginx does."""
        st = ctx.st
        headers = nginx_header_filter(status, headers)
        st.response_status = status
        st.response_headers = headers
        without_body = ctx.request.method == "HEAD" or status in (204, 304) or status < 200
        declared = headers.get("content-length")
        if declared is not None and not without_body and declared.strip() != str(len(body)):
            # nginx would send this header with the real body: a broken response on the wire
            self.gw.recorder.issue(
                ctx.record,
                Issue(
                    "framing",
                    f"Content-Length {declared!r} but the body has {len(body)} bytes "
                    f"(status {status})",
                ),
            )
            headers.popall("content-length", None)
            declared = None
        resp = KongResponse(status=status)
        resp.headers.extend(headers)
        if declared is None and without_body:
            resp.headers.popall("content-length", None)
        await resp.prepare(ctx.request)
        if body and not without_body:
            await resp.write(body)
        await resp.write_eof()
        st.response_sent_at = time.time() * 1000
        return resp

    # --- proxying ----------------------------------------------------------------------------

    async def _proxy(self, ctx: _Ctx) -> web.StreamResponse:
        st = ctx.st
        match = st.match
        assert match is not None and match.service is not None
        service = match.service
        st.proxied = True
        st.forwarded_prefix = match.prefix if match.prefix != "/" else None
        path = st.upstream_path or match.upstream_path
        query = st.raw_query
        host = f"[{service.host}]" if ":" in service.host else service.host
        target = f"{service.protocol}://{host}:{service.port}{path}"
        if query or "?" in st.request_uri:
            target += "?" + query
        st.upstream_path = path
        headers = upstream.request_headers(st, match)
        body = st.upstream_body if st.upstream_body is not None else st.body
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=service.connect_timeout / 1000,
            sock_read=service.read_timeout / 1000,
        )
        st.upstream_start = time.time() * 1000
        try:
            async with self.gw.http.request(
                st.upstream_method or st.method,
                URL(target, encoded=True),
                headers=headers,
                data=body if body or st.method not in ("GET", "HEAD") else None,
                allow_redirects=False,
                timeout=timeout,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            ) as resp:
                st.upstream_headers_at = time.time() * 1000
                status_line = len(f"HTTP/1.1 {resp.status} {resp.reason or ''}\r\n")
                if upstream_headers_too_large(status_line, resp.raw_headers):
                    return await self._upstream_error(
                        ctx, 502, ValueError("upstream sent too big header")
                    )
                st.service_status = resp.status
                st.service_headers = upstream.upstream_visible(resp.headers)
                if st.buffering:
                    st.service_body = await resp.read()
                    return await self._buffered(ctx, resp)
                return await self._stream(ctx, resp)
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            return await self._upstream_error(ctx, 504, exc)
        except (aiohttp.ClientError, OSError) as exc:
            return await self._upstream_error(ctx, 502, exc)

    def _proxied_headers(self, ctx: _Ctx, headers: CIMultiDict[str]) -> CIMultiDict[str]:
        st = ctx.st
        upstream_via = headers.get("via")
        headers.popall("via", None)
        kong_via = f"1.1 {SERVER_HEADER}"
        headers["Via"] = f"{upstream_via}, {kong_via}" if upstream_via else kong_via
        if "server" not in headers:
            headers["Server"] = SERVER_HEADER
        if st.upstream_start is not None and st.upstream_headers_at is not None:
            waiting = int(st.upstream_headers_at - st.upstream_start)
            headers["X-Kong-Upstream-Latency"] = str(waiting)
        if st.upstream_start is not None:
            headers["X-Kong-Proxy-Latency"] = str(int(st.upstream_start - st.start_ms))
        headers["X-Kong-Request-Id"] = st.request_id
        return headers

    async def _stream(self, ctx: _Ctx, resp: aiohttp.ClientResponse) -> web.StreamResponse:
        st = ctx.st
        headers = self._proxied_headers(
            ctx, upstream.response_headers(resp.headers, st.early_header_ops)
        )
        st.response_status = resp.status
        st.response_headers = headers
        out = KongResponse(status=resp.status, reason=resp.reason)
        out.headers.extend(headers)
        await out.prepare(ctx.request)
        try:
            async for chunk in resp.content.iter_any():
                await out.write(chunk)
        except (TimeoutError, aiohttp.ClientError) as exc:
            # headers are gone already: like nginx, cut the downstream connection
            log.warning("upstream failed while streaming %s: %r", st.request_uri, exc)
            st.upstream_failed = True
            if ctx.request.transport is not None:
                ctx.request.transport.close()
            return out
        await out.write_eof()
        st.response_sent_at = time.time() * 1000
        return out

    async def _buffered(self, ctx: _Ctx, resp: aiohttp.ClientResponse) -> web.StreamResponse:
        st = ctx.st
        st.phase = "response"
        st.response_status = resp.status
        st.response_headers = upstream.buffered_response_headers(resp.headers, st.response_headers)
        for cp in ctx.response_plugins:
            terminal = await self._run_plugin(ctx, cp)
            if terminal is not None:
                return await self._send_terminal(ctx, self._strict_failure(ctx) or terminal)
        if failure := self._strict_failure(ctx):
            return await self._send_terminal(ctx, failure)
        headers = self._proxied_headers(ctx, CIMultiDict(st.response_headers))
        return await self._send(
            ctx, st.response_status or resp.status, headers, st.service_body or b""
        )

    async def _upstream_error(
        self, ctx: _Ctx, status: int, exc: BaseException
    ) -> web.StreamResponse:
        st = ctx.st
        log.warning("upstream of %s %s failed: %s (%d)", st.method, st.request_uri, exc, status)
        st.upstream_failed = True
        if st.buffering:
            # Kong.response: the subrequest came back truncated (lua-nginx-module's
            # post-subrequest handler, no error_page), so no response phase runs and
            # kong_error_handlers answers with kong.response.exit (KONG_EXITED)
            st.exited = True
        accept = st.headers.get("accept") or st.headers.get("content-type") or "text/plain"
        terminal = error_response(
            st, status, http_error_message(status), source="error", accept=accept
        )
        return await self._send_terminal(ctx, terminal)

    # --- log ---------------------------------------------------------------------------------

    def _schedule_log(self, ctx: _Ctx) -> None:
        plugins = [cp for cp in ctx.log_plugins if cp.info.external]
        if not plugins:
            ctx.record.done.set()
            return
        task = asyncio.create_task(self._log_phase(ctx, plugins))
        self.gw.track(task)

    async def _log_phase(self, ctx: _Ctx, plugins: list[ConfiguredPlugin]) -> None:
        st = ctx.st
        st.phase = "log"
        st.in_timer = True

        async def one(cp: ConfiguredPlugin) -> None:
            # Kong only logs errors of the log timer (the bridge recorded them)
            with contextlib.suppress(LuaError):
                await self.gw.bridge.run(ctx.worker, cp, st=st, record=ctx.record, env=ctx.rt.env)

        try:
            await asyncio.gather(*(one(cp) for cp in plugins))
        finally:
            ctx.record.done.set()

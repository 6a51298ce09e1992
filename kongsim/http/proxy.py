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
   Unreachable upstream → 502, timeout → 504 (Kong's error handler format). An upstream
   1xx (but 101) is the response, as in nginx 1.25.3 (:mod:`kongsim.http.interim`).
6. ``log``: after the response is sent, each collected log handler in its own task (Kong: one
   timer each), never delaying the client.

Kong's response headers and strict mode's 500 are in :mod:`kongsim.http.exchange`; nginx's own
header rules and size limits in :mod:`kongsim.http.nginx`. The proxy gets what it needs of the
gateway as one :class:`ProxyServices` object.

NOT emulated: ``header_filter``/``body_filter`` phases, request buffering options, HTTPS
redirects, gRPC, WebSockets, ``X-Kong-Upstream-Status``, nginx's size limits on headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from kongsim.config.plugins import ConfiguredPlugin
from kongsim.errors import LuaError
from kongsim.http import interim, keyauth
from kongsim.http.exchange import Exchange
from kongsim.http.nginx import KongResponse, client_headers_too_large, upstream_headers_too_large
from kongsim.http.runtime import Runtime
from kongsim.pdk import error_response, http_error_message
from kongsim.pdk.codec import multimap_headers
from kongsim.protocol.bridge import Bridge, Worker
from kongsim.recorder import Issue, Recorder
from kongsim.request import upstream
from kongsim.request.state import RequestState, Terminal
from kongsim.request.uri import normalize

log = logging.getLogger("kongsim.proxy")

UNEXPECTED = "An unexpected error occurred"


@dataclass(frozen=True)
class ProxyServices:
    """Everything the proxy uses of the gateway, built by the gateway (so this module does not
    import it). ``current_runtime`` is asked once per request: a reload affects new requests only.
    ``track`` keeps a ``log``-phase task so that the gateway can wait for it on stop."""

    recorder: Recorder
    bridge: Bridge
    http: aiohttp.ClientSession
    strict: bool
    current_runtime: Callable[[], Runtime]
    next_worker: Callable[[], Worker]
    track: Callable[[asyncio.Task[None]], None]


class Proxy:
    """Handles every non-admin request of the kongsim listener."""

    def __init__(self, services: ProxyServices) -> None:
        self.svc = services

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
        record = self.svc.recorder.start(st.request_id, st.method, st.request_uri)
        ctx = Exchange(
            self.svc.current_runtime(),
            self.svc.next_worker(),
            st,
            record,
            request,
            self.svc.recorder,
        )
        request_line = len(request.method) + len(request.raw_path) + len(" HTTP/1.1\r\n") + 1
        try:
            if client_headers_too_large(request_line, request.raw_headers):
                # nginx refuses it before any phase: error_page 494 -> Kong's handler -> 400
                terminal = error_response(
                    st, 400, http_error_message(494), source="error", accept=None
                )
                response = await ctx.send_terminal(terminal)
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
            self.svc.recorder.issue(record, Issue("kongsim_bug", repr(exc)))
            record.done.set()
            raise
        record.status = st.response_status
        self._schedule_log(ctx)
        return response

    # --- phases ------------------------------------------------------------------------------

    async def _pipeline(self, ctx: Exchange) -> web.StreamResponse:
        st, rt = ctx.st, ctx.rt
        st.phase = "rewrite"
        ctx.log_plugins = list(rt.plugins.globals_with("log"))
        for cp in rt.plugins.globals_with("rewrite"):
            terminal = await self._run_plugin(ctx, cp)
            if terminal is not None:
                return await ctx.send_terminal(ctx.strict_failure(self.svc.strict) or terminal)
        if failure := ctx.strict_failure(self.svc.strict):
            return await ctx.send_terminal(failure)

        st.phase = "access"
        st.match = rt.router.match(
            st.method,
            st.host_header,
            normalize(st.raw_path, True),
            multimap_headers(st.headers, 1000),
            st.server_port,
        )
        if st.match is None:
            return await ctx.send_terminal(
                error_response(st, 404, "no Route matched with those values")
            )
        ctx.record.route = st.match.route.name or st.match.route.id
        ctx.log_plugins = []
        delayed = await self._access(ctx)
        if failure := ctx.strict_failure(self.svc.strict):
            return await ctx.send_terminal(failure)
        if delayed is not None:
            return await ctx.send_terminal(delayed)
        if st.match.service is None:
            return await ctx.send_terminal(
                error_response(st, 503, "no Service found with those values")
            )
        return await self._proxy(ctx)

    async def _access(self, ctx: Exchange) -> Terminal | None:
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

    async def _run_plugin(self, ctx: Exchange, cp: ConfiguredPlugin) -> Terminal | None:
        """Run the current phase of one plugin; a hard error becomes Kong's 500."""
        st = ctx.st
        try:
            if not cp.info.external:
                return keyauth.access(st, cp.config, ctx.rt.decl)
            return await self.svc.bridge.run(
                ctx.worker, cp, st=st, record=ctx.record, env=ctx.rt.env
            )
        except LuaError:
            st.unexpected = True
            return error_response(st, 500, UNEXPECTED, source="error")

    # --- proxying ----------------------------------------------------------------------------

    async def _proxy(self, ctx: Exchange) -> web.StreamResponse:
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
            async with self.svc.http.request(
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
                if isinstance(resp, interim.InterimAwareResponse) and resp.interim:
                    return await self._interim(ctx, resp, service.read_timeout / 1000)
                if st.buffering:
                    st.service_body = await resp.read()
                    return await self._buffered(ctx, resp.status, resp.headers)
                return await self._stream(ctx, resp)
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            return await self._upstream_error(ctx, 504, exc)
        except (aiohttp.ClientError, OSError) as exc:
            return await self._upstream_error(ctx, 502, exc)

    async def _stream(self, ctx: Exchange, resp: aiohttp.ClientResponse) -> web.StreamResponse:
        st = ctx.st
        headers = ctx.proxied_headers(upstream.response_headers(resp.headers, st.early_header_ops))
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

    async def _buffered(
        self,
        ctx: Exchange,
        status: int,
        upstream_headers: CIMultiDict[str] | CIMultiDictProxy[str],
    ) -> web.StreamResponse:
        st = ctx.st
        st.phase = "response"
        st.response_status = status
        st.response_headers = upstream.buffered_response_headers(
            upstream_headers, st.response_headers
        )
        for cp in ctx.response_plugins:
            terminal = await self._run_plugin(ctx, cp)
            if terminal is not None:
                return await ctx.send_terminal(ctx.strict_failure(self.svc.strict) or terminal)
        if failure := ctx.strict_failure(self.svc.strict):
            return await ctx.send_terminal(failure)
        headers = ctx.proxied_headers(CIMultiDict(st.response_headers))
        return await ctx.send(st.response_status or status, headers, st.service_body or b"")

    async def _interim(
        self, ctx: Exchange, resp: interim.InterimAwareResponse, read_timeout_s: float
    ) -> web.StreamResponse:
        """The upstream sent a 1xx first: nginx 1.25.3 takes it for the response, with the
        rest of the exchange as its body, read until the upstream closes or `read_timeout`
        (`kongsim.http.interim`)."""
        st = ctx.st
        final = interim.as_final(resp, await resp.read())
        assert final is not None
        st.service_status = final.status
        st.service_headers = upstream.upstream_visible(final.headers)
        if st.buffering:
            if not final.ends:
                await asyncio.sleep(read_timeout_s)  # the subrequest ends truncated
                timed_out = TimeoutError("upstream timed out reading the body of a 1xx")
                return await self._upstream_error(ctx, final.status, timed_out)
            st.service_body = final.rest
            return await self._buffered(ctx, final.status, final.headers)
        headers = ctx.proxied_headers(upstream.response_headers(final.headers, st.early_header_ops))
        st.response_status, st.response_headers = final.status, headers
        out = KongResponse(status=final.status, reason=final.reason)
        out.headers.extend(headers)
        await out.prepare(ctx.request)
        await out.write(final.rest)  # a 1xx has no framing: the bytes go out as they are
        if not final.ends:
            await asyncio.sleep(read_timeout_s)
            st.upstream_failed = True
            if ctx.request.transport is not None:
                ctx.request.transport.close()  # nginx finalizes with an error: cut
            return out
        await out.write_eof()
        st.response_sent_at = time.time() * 1000
        return out

    async def _upstream_error(
        self, ctx: Exchange, status: int, exc: BaseException
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
        return await ctx.send_terminal(terminal)

    # --- log ---------------------------------------------------------------------------------

    def _schedule_log(self, ctx: Exchange) -> None:
        plugins = [cp for cp in ctx.log_plugins if cp.info.external]
        if not plugins:
            ctx.record.done.set()
            return
        task = asyncio.create_task(self._log_phase(ctx, plugins))
        self.svc.track(task)

    async def _log_phase(self, ctx: Exchange, plugins: list[ConfiguredPlugin]) -> None:
        st = ctx.st
        st.phase = "log"
        st.in_timer = True

        async def one(cp: ConfiguredPlugin) -> None:
            # Kong only logs errors of the log timer (the bridge recorded them)
            with contextlib.suppress(LuaError):
                await self.svc.bridge.run(ctx.worker, cp, st=st, record=ctx.record, env=ctx.rt.env)

        try:
            if len(plugins) == 1:
                await one(plugins[0])  # no task of its own needed for a single timer
            else:
                await asyncio.gather(*(one(cp) for cp in plugins))
        finally:
            ctx.record.done.set()

"""The admin API server: asyncio, one request per connection, bearer token required.

For each connection: the request head is read under the read deadline, the token checked
(401 with ``WWW-Authenticate: Bearer``, counted, nothing read further or done), the route
matched (404, 405), the body read (413 above the limit), the handler run, the response
written under the write deadline, and the connection closed. Every outcome is counted
(`AdminObserver.admin_request`).

Connection slots (`Limits.max_connections`, a total cap): a connection is *unproven* until
its request head has been read and its token accepted. A newcomer that finds every slot
taken closes the oldest unproven connection (counted ``evicted``) and takes its place; only
when every slot holds a proven request is it answered 503 at once. So idle, slow or
token-less connections cannot lock an operator out: a request that arrives before
`max_connections` newer connections do is served.

Logs: every successful purge at INFO (``admin_purge``: client address, method, route, event
id, entries dropped here, queued, soft, duplicate; never the token), reads at DEBUG.
Refusals (401, 4xx, 408, 503, evictions) at most once per kind every few seconds, with the
number held back (`sidecar.admin.lograte`); a connection closed before sending anything
(a port probe) at DEBUG only.

It runs on the sidecar's event loop, beside the gRPC server: the limits bound what a client
can hold (connections, bytes, time), large bodies are parsed in a worker thread, and no
exception of a request leaves its connection's task.

Not guaranteed: service under a flood of new connections (a client that opens connections
faster than an operator's request arrives can evict it; the operator's client sees the
connection closed and may retry); fairness between token holders (they may use every slot
for the read deadline each); TLS (bind to loopback, or put a TLS proxy in front); that a
purge whose client went away was not done (a handler that started runs to the end).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from dataclasses import dataclass

from sidecar.admin.audit import AdminLog
from sidecar.admin.auth import check_authorization
from sidecar.admin.http import (
    CONTINUE,
    HttpError,
    Limits,
    NoRequestError,
    Request,
    Response,
    check_length,
    continue_needed,
    encode_response,
    json_response,
    read_body,
    read_head,
)
from sidecar.admin.listen import is_loopback, split_host_port
from sidecar.admin.ports import AdminObserver
from sidecar.admin.routes import Handled, Routes, match, route_of

__all__ = ["AdminServer", "is_loopback", "split_host_port"]

log = logging.getLogger("strata.admin")

_RESULTS = {200: "ok", 204: "ok", 404: "not_found"}
#: Seconds between tries to bind a port the replaced sidecar still holds.
_BIND_RETRY_S = 0.2
#: Seconds a refused request's connection is kept to read what the client still sends.
_LINGER_S = 1.0


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer or "unknown")


@dataclass(slots=True, eq=False)
class _Exchange:
    """One connection and what is known of its request, for the slots, the count and the
    log. `proven`: its request head was read and its token accepted (it cannot be evicted
    any more); `evicted`: closed to make room for a newer connection."""

    peer: str
    writer: asyncio.StreamWriter
    task: asyncio.Task[None] | None
    route: str = "none"
    method: str = ""
    path: str = ""
    auth_problem: str = ""
    body_read: bool = False
    proven: bool = False
    evicted: bool = False


class AdminServer:
    """Serves `routes` on `listen` for holders of `token`; `start`, then `close`."""

    def __init__(
        self,
        listen: str,
        token: str,
        routes: Routes,
        observer: AdminObserver,
        limits: Limits | None = None,
    ) -> None:
        self._listen = listen
        self._token = token
        self._routes = routes
        self._observer = observer
        self._limits = limits or Limits()
        self._server: asyncio.Server | None = None
        #: Open connections, oldest first (dicts keep insertion order).
        self._open: dict[_Exchange, None] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._log = AdminLog()
        self._retry: asyncio.Task[None] | None = None
        self.address = ""

    async def start(self, wait_for_port: bool = False) -> str:
        """Bind and serve; the bound ``HOST:PORT`` (port 0 picks a free one). OSError naming
        the setting when the address cannot be bound -- unless `wait_for_port` (a running
        sidecar is being taken over and still holds it) and the port is in use: then it is
        bound as soon as it is free, and ``""`` is returned. A non-loopback address is
        served with a warning."""
        try:
            await self._bind()
        except OSError as exc:
            if not (wait_for_port and exc.errno == errno.EADDRINUSE):
                raise OSError(exc.errno, f"admin_listen {self._listen}: {exc.strerror}") from exc
            log.warning(
                "admin port held by the sidecar being replaced; the admin API starts when it "
                "frees the port",
                extra={"event.action": "admin_wait", "strata.admin_listen": self._listen},
            )
            self._retry = asyncio.create_task(self._bind_later())
            return ""
        return self.address

    async def _bind_later(self) -> None:
        while True:
            await asyncio.sleep(_BIND_RETRY_S)
            try:
                await self._bind()
            except OSError:
                continue
            return

    async def _bind(self) -> None:
        host, port = split_host_port(self._listen)
        self._server = await asyncio.start_server(
            self._accept, host, port, limit=self._limits.stream_limit
        )
        bound = self._server.sockets[0].getsockname()
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        self.address = f"{shown}:{bound[1]}"
        if not is_loopback(host):
            log.warning(
                "admin API listening on a non-loopback address: anyone who can reach it and "
                "holds the token can purge the cache",
                extra={"event.action": "admin_exposed", "strata.admin_listen": self.address},
            )
        log.info(
            "admin API started",
            extra={"event.action": "admin_start", "strata.admin_listen": self.address},
        )

    async def close(self) -> None:
        """Stop accepting, then end the connections being served (their clients get no
        answer if their handler had not finished)."""
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
            self._retry = None
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    @property
    def connections(self) -> int:
        """Connections holding a slot now."""
        return len(self._open)

    @property
    def authenticated(self) -> int:
        """Connections holding a slot whose request head was read and its token accepted."""
        return sum(1 for e in self._open if e.proven)

    def _make_room(self, newcomer: _Exchange) -> bool:
        """A slot for `newcomer`: free, or taken from the oldest unproven connection.
        False when every slot holds a proven request."""
        if len(self._open) < self._limits.max_connections:
            return True
        victim = next((e for e in self._open if not e.proven), None)
        if victim is None:
            return False
        del self._open[victim]
        victim.evicted = True
        victim.writer.transport.abort()
        if victim.task is not None:
            victim.task.cancel()
        self._observer.admin_request(victim.route, "evicted")
        self._log.refused(
            "evicted",
            logging.INFO,
            "admin connection closed to make room for a newer one (its request had not "
            "arrived or was refused)",
            victim,
            {"strata.admin_newcomer": newcomer.peer},
        )
        return True

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        exchange = _Exchange(_peer(writer), writer, task)
        try:
            if not self._make_room(exchange):
                self._observer.admin_request("none", "busy")
                self._log.refused(
                    "busy", logging.WARNING, "admin connection refused: every slot busy", exchange
                )
                busy = json_response(503, {"message": "too many admin connections"})
                await self._send(writer, Response(503, busy.body, (("Retry-After", "1"),)))
                return
            self._open[exchange] = None
            try:
                await self._serve(reader, writer, exchange)
            finally:
                self._open.pop(exchange, None)
        except asyncio.CancelledError:
            if not exchange.evicted or task is None:
                raise
            task.uncancel()  # evicted (counted and logged by `_make_room`): ends quietly
        except Exception:
            log.exception(
                "admin connection failed",
                extra={"event.action": "admin_error", "client.address": exchange.peer},
            )
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._limits.write_timeout_s):
                    await writer.wait_closed()
            if task is not None:
                self._tasks.discard(task)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, exchange: _Exchange
    ) -> None:
        try:
            handled = await self._answer(reader, writer, exchange)
            response = handled.response
            result = _RESULTS.get(response.status, "error")
            self._log.served(exchange, handled)
        except HttpError as exc:
            response = json_response(exc.status, {"message": exc.message})
            response = Response(response.status, response.body, exc.headers)
            result = exc.result
            self._log_refusal(exchange, exc)
        except TimeoutError:
            response = json_response(408, {"message": "the request was not received in time"})
            result = "timeout"
            self._log.refused("timeout", logging.INFO, "admin request too slow", exchange)
        except Exception:
            log.exception(
                "admin request failed",
                extra={
                    "event.action": "admin_error",
                    "client.address": exchange.peer,
                    "http.request.method": exchange.method,
                    "url.path": exchange.path,
                },
            )
            response = json_response(500, {"message": "internal error (see the sidecar's log)"})
            result = "error"
        self._observer.admin_request(exchange.route, result)
        await self._send(writer, response)
        if not exchange.body_read:
            await self._linger(reader, writer)

    async def _linger(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """After a refusal, read what the client still sends (bounded in bytes and time)
        before closing: closing with unread data resets the connection, and the client
        could lose the response."""
        with contextlib.suppress(Exception):
            writer.write_eof()
            left = self._limits.max_body
            async with asyncio.timeout(_LINGER_S):
                while left > 0 and (chunk := await reader.read(min(left, 65536))):
                    left -= len(chunk)

    async def _answer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, exchange: _Exchange
    ) -> Handled:
        deadline = asyncio.get_running_loop().time() + self._limits.read_timeout_s
        async with asyncio.timeout_at(deadline):
            request = await read_head(reader, self._limits)
        exchange.method, exchange.path = request.method, ascii(request.path)[1:-1][:200]
        exchange.route = route_of(request.path)[0]
        self._authorize(request, exchange)
        found = match(request.method, request.path)
        check_length(request, self._limits)
        async with asyncio.timeout_at(deadline):
            if continue_needed(request):
                writer.write(CONTINUE)
                await writer.drain()
            body = await read_body(reader, request)
        exchange.body_read = True
        return await self._routes.handle(found, request, body)

    def _authorize(self, request: Request, exchange: _Exchange) -> None:
        verdict = check_authorization(request.values("authorization"), self._token)
        if verdict.allowed:
            exchange.proven = True
            return
        exchange.auth_problem = verdict.problem
        challenge = 'Bearer realm="strata-admin"'
        if verdict.problem in ("wrong", "malformed"):
            challenge += ', error="invalid_token"'
        raise HttpError(
            401,
            "unauthorized",
            "a valid 'Authorization: Bearer <token>' header is required",
            (("WWW-Authenticate", challenge),),
        )

    def _log_refusal(self, exchange: _Exchange, exc: HttpError) -> None:
        if isinstance(exc, NoRequestError):
            self._log.no_request(exchange.peer)
            return
        unauthorized = exc.result == "unauthorized"
        self._log.refused(
            exc.result,
            logging.WARNING if unauthorized else logging.INFO,
            "admin request refused: "
            + (f"token {exchange.auth_problem}" if unauthorized else exc.message),
            exchange,
            {"http.response.status_code": exc.status},
        )

    async def _send(self, writer: asyncio.StreamWriter, response: Response) -> None:
        writer.write(encode_response(response))
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(self._limits.write_timeout_s):
                await writer.drain()

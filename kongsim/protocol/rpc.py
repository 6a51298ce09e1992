"""Kong's side of the plugin server's MessagePack-RPC: an asyncio unix-socket client.

Like Kong (``rpc/mp_rpc.lua``): one request per connection at a time and never pipelined,
``[0, msgid, "plugin.X", [param]]`` answered by ``[1, msgid, err, result]``, a message id counter
per client (Kong: per plugin per nginx worker), connections taken from and returned to a
keep-alive pool (Kong: the cosocket pool, 256 per worker). ``pooled=False`` opens a new connection
for every RPC instead; both are valid against the Python server.

The pool is last-in first-out, as lua-nginx-module's: ``setkeepalive`` inserts a connection at
the head of the pool's queue and ``connect`` takes the head. A connection goes back to the pool
as soon as its answer is read, before the caller sees the answer, so a caller that sends its
next RPC without yielding to the event loop in between (``bridge_loop`` does, unless a PDK
function yields) gets the same connection again: one plugin event's ``HandleEvent`` and
``Step`` RPCs travel over one connection, while concurrent events each hold their own.

Errors: an error string in the answer raises :class:`RpcError`; a failed connect or a connection
closed before an answer raises :class:`RpcTransportError` (Kong logs "no data"); no answer within
``timeout`` raises :class:`RpcTimeoutError` (Kong's nginx default is 60 s; with a Python plugin it
means an exception escaped a phase handler); an answer that is not a response to this message id
raises :class:`RpcProtocolError` (Kong asserts). A connection that failed in any way is closed,
never returned to the pool. Idle pooled connections the server closed are dropped on reuse, as
nginx's keep-alive pool does.

Notifications ``[2, label, args]`` read while waiting for an answer are handled and the wait
goes on, as ``Rpc:call`` does: each is recorded in :attr:`RpcClient.notifications` and passed to
``on_notification(label, args)``; a ``serverPid`` notification updates
:attr:`RpcClient.server_pid` and, when the pid changed, calls ``on_server_pid_change`` (Kong's
``rpc_notifications:serverPid`` then forgets the plugin's instances). Messages that arrive while
no call waits on their connection are kept and read by the next call on it, as Kong's next
``Rpc:call`` would read them from the socket. The Python server never sends any.

Not guaranteed: the timeout covers the whole call (Kong's applies to each socket read); a write
is not awaited for flow control (the call waits for the answer, which cannot come before the
server has read the request).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any

import msgpack  # type: ignore[import-untyped]

from kongsim.errors import RpcError, RpcProtocolError, RpcTimeoutError, RpcTransportError

DEFAULT_POOL_SIZE = 256


def _tonumber(value: Any) -> float | None:
    """Lua's ``tonumber``: a number, a numeric string, else nil (a table is nil)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str | bytes):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _is_notification(message: Any) -> bool:
    return type(message) is list and len(message) == 3 and message[0] == 2


class _Expired(Exception):  # noqa: N818 - internal signal, turned into RpcTimeoutError
    """The call's deadline passed with no answer."""


class _Connection(asyncio.Protocol):
    """One unix-socket connection: feeds what it reads to an unpacker and hands the first
    message that is not a notification to the call waiting on it.

    The deadline timer is armed lazily, once per connection rather than once per call: when it
    fires before the current call's deadline it is re-armed for it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, notify: Callable[[Any, Any], None]) -> None:
        self.loop = loop
        self.notify = notify
        self.unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, unicode_errors="replace")
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Any] | None = None
        self.pending: deque[Any] = deque()
        self.failure: BaseException | None = None
        self.eof = False
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.unpacker.feed(data)
        try:
            for message in self.unpacker:
                waiter = self.waiter
                if waiter is None or waiter.done():
                    self.pending.append(message)
                elif _is_notification(message):
                    self.notify(message[1], message[2])
                else:
                    self.waiter = None
                    waiter.set_result(message)
        except Exception as exc:  # a malformed message: the call waiting (or the next) fails
            self._fail(exc)
            self.close()

    def eof_received(self) -> bool:
        self.eof = True
        self._fail(RpcTransportError("closed"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self._fail(exc if exc is not None else RpcTransportError("closed"))
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    # --- calls -------------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        transport = self.transport
        return not self.eof and transport is not None and not transport.is_closing()

    def send(self, payload: bytes, deadline: float) -> asyncio.Future[Any]:
        """Write one request; the future gets the answer (notifications before it handled)."""
        waiter = self.loop.create_future()
        while self.pending:
            message = self.pending.popleft()
            if _is_notification(message):
                self.notify(message[1], message[2])
            else:
                waiter.set_result(message)
                return waiter
        if self.failure is not None:
            waiter.set_exception(self.failure)
            return waiter
        transport = self.transport
        if transport is None or transport.is_closing():
            waiter.set_exception(RpcTransportError("closed"))
            return waiter
        self.waiter = waiter
        self.deadline = deadline
        if self.timer is None:
            self.timer = self.loop.call_at(deadline, self._check_deadline)
        transport.write(payload)
        return waiter

    def _check_deadline(self) -> None:
        self.timer = None
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.loop.time() >= self.deadline:
            self.waiter = None
            waiter.set_exception(_Expired())
        else:
            self.timer = self.loop.call_at(self.deadline, self._check_deadline)

    def _fail(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            with contextlib.suppress(Exception):
                self.transport.close()


class RpcClient:
    """Calls one plugin server over its unix socket."""

    def __init__(
        self,
        socket_path: str,
        *,
        timeout: float,
        pooled: bool = True,
        pool_size: int = DEFAULT_POOL_SIZE,
        on_notification: Callable[[Any, Any], None] | None = None,
        on_server_pid_change: Callable[[float, float | None], None] | None = None,
    ) -> None:
        self.socket_path = socket_path
        self.on_notification = on_notification
        self.on_server_pid_change = on_server_pid_change
        self.notifications: list[tuple[Any, Any]] = []
        self.server_pid: float | None = None
        self.timeout = timeout
        self.pooled = pooled
        self.pool_size = pool_size
        self._idle: list[_Connection] = []
        """The keep-alive pool; its head (where connections go and come from) is the end."""
        self._msg_id = 0
        # Lua strings are bytes: a header value kongsim decoded with surrogateescape goes
        # back out as the same bytes in a msgpack str, as Kong sends it
        self._pack = msgpack.Packer(use_bin_type=True, unicode_errors="surrogateescape").pack
        self.calls = 0
        self.connects = 0

    async def call(self, method: str, *params: Any) -> Any:
        """Send one RPC and wait for its answer; return the result or raise (see module doc)."""
        self._msg_id += 1
        msg_id = self._msg_id
        self.calls += 1
        conn = self._pooled_connection()
        if conn is None:
            conn = await self._connect()
        try:
            deadline = conn.loop.time() + self.timeout
            reply = await conn.send(self._pack([0, msg_id, method, list(params)]), deadline)
        except _Expired as exc:
            conn.close()
            raise RpcTimeoutError(
                f"{method}: no answer within {self.timeout:g} s (timeout)"
            ) from exc
        except (OSError, RpcTransportError) as exc:
            conn.close()
            raise RpcTransportError(f"{method}: no data ({exc})") from exc
        except BaseException:
            conn.close()
            raise
        if not (type(reply) is list and len(reply) == 4 and reply[0] == 1):
            conn.close()
            raise RpcProtocolError(f"{method}: RPC response expected, got {reply!r:.200}")
        if reply[1] != msg_id:
            conn.close()
            raise RpcProtocolError(
                f"{method}: unexpected RPC response ID {reply[1]!r} (expected {msg_id})"
            )
        self._release(conn)
        if reply[2] is not None:
            raise RpcError(str(reply[2]))
        return reply[3]

    def _notification(self, label: Any, args: Any) -> None:
        """``Rpc:notification``: ``[2, label, args]``; only ``serverPid`` means something."""
        self.notifications.append((label, args))
        if self.on_notification is not None:
            self.on_notification(label, args)
        if label == "serverPid":
            pid = _tonumber(args)
            old, self.server_pid = self.server_pid, pid
            if old is not None and pid != old and self.on_server_pid_change is not None:
                self.on_server_pid_change(old, pid)

    def _pooled_connection(self) -> _Connection | None:
        """The head of the keep-alive pool (the connection released last), or None."""
        idle = self._idle
        while self.pooled and idle:
            conn = idle.pop()
            if conn.usable:
                return conn
            conn.close()
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_unix_connection(
                    lambda: _Connection(loop, self._notification), self.socket_path
                ),
                self.timeout,
            )
        except TimeoutError as exc:
            raise RpcTimeoutError(f"trying to connect: timeout ({self.socket_path})") from exc
        except OSError as exc:
            raise RpcTransportError(
                f"trying to connect: {exc.strerror or exc} ({self.socket_path})"
            ) from exc
        self.connects += 1
        return conn

    def _release(self, conn: _Connection) -> None:
        if self.pooled and len(self._idle) < self.pool_size and conn.usable:
            self._idle.append(conn)
        else:
            conn.close()

    def drop_idle(self) -> None:
        """Close every idle pooled connection (e.g. after the server restarted)."""
        while self._idle:
            self._idle.pop().close()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        if idle:
            await asyncio.sleep(0)  # let the transports' connection_lost run

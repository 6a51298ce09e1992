"""Kong's side of the plugin server's MessagePack-RPC: an asyncio unix-socket client.

Like Kong (``rpc/mp_rpc.lua``): one request per connection at a time and never pipelined,
``[0, msgid, "plugin.X", [param]]`` answered by ``[1, msgid, err, result]``, a message id counter
per client (Kong: per plugin per nginx worker), connections taken from and returned to a
keep-alive pool (Kong: the cosocket pool, 256 per worker). ``pooled=False`` opens a new connection
for every RPC instead; both are valid against the Python server.

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
``rpc_notifications:serverPid`` then forgets the plugin's instances). The Python server never
sends any.
"""

from __future__ import annotations

import asyncio
import contextlib
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


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, unicode_errors="replace")

    @property
    def usable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing()

    async def read_message(self) -> Any:
        while True:
            try:
                return next(self.unpacker)
            except StopIteration:
                pass
            data = await self.reader.read(65536)
            if not data:
                raise RpcTransportError("no data")
            self.unpacker.feed(data)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


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
        self._msg_id = 0
        self.calls = 0
        self.connects = 0

    async def call(self, method: str, *params: Any) -> Any:
        """Send one RPC and wait for its answer; return the result or raise (see module doc)."""
        self._msg_id += 1
        msg_id = self._msg_id
        self.calls += 1
        conn = await self._acquire()
        try:
            # asyncio.timeout rather than wait_for: no extra task per RPC (this is the hot path)
            async with asyncio.timeout(self.timeout):
                conn.writer.write(
                    msgpack.packb([0, msg_id, method, list(params)], use_bin_type=True)
                )
                await conn.writer.drain()
                reply = await conn.read_message()
                while isinstance(reply, list) and len(reply) == 3 and reply[0] == 2:
                    self._notification(reply[1], reply[2])
                    reply = await conn.read_message()
        except TimeoutError as exc:
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
        if not (isinstance(reply, list) and len(reply) == 4 and reply[0] == 1):
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

    async def _acquire(self) -> _Connection:
        while self.pooled and self._idle:
            conn = self._idle.pop()
            if conn.usable:
                return conn
            conn.close()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(self.socket_path), self.timeout
            )
        except TimeoutError as exc:
            raise RpcTimeoutError(f"trying to connect: timeout ({self.socket_path})") from exc
        except OSError as exc:
            raise RpcTransportError(
                f"trying to connect: {exc.strerror or exc} ({self.socket_path})"
            ) from exc
        self.connects += 1
        return _Connection(reader, writer)

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
        for conn in idle:
            with contextlib.suppress(Exception):
                await conn.writer.wait_closed()

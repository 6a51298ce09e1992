"""A scripted upstream for end-to-end tests of HTTP semantics: each test says exactly which
status, header lines and body a path answers, and reads back every request the origin got.

Use `scripted_stack` (a `tools.stack.Stack` whose upstream is a `ScriptedOrigin`), then
``origin.script("/p", Reply(200, [("Cache-Control", "max-age=60")], b"x"))``. A path
answers its replies in order; the last one repeats. An unscripted path answers 404 with
``Cache-Control: no-store``. A reply's header lines are sent exactly as given (repeated
names, odd case, odd values): aiohttp adds only ``Content-Length``, ``Date`` (unless the
reply sets one) and ``Server``. A `Reply` may be callable-free: `Reply.delay_s` delays it,
`Reply.gate` holds it until the test sets the event.

Not guaranteed: byte-exact framing (aiohttp writes the status line and ``Content-Length``);
1xx interim responses (aiohttp cannot send them; tests of those use a raw socket origin).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from tests.support.sidecar import SIDECAR_TIMEOUT_MS, clean_env, unix_sidecar
from tools.stack import Stack


@dataclass(frozen=True)
class Reply:
    """One scripted answer. `when`: answer only requests for which it returns True (then
    the next matching reply in the script is tried; none matches -> the last reply)."""

    status: int = 200
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""
    delay_s: float = 0.0
    when: Callable[[web.Request], bool] | None = None
    #: Answer only once this event is set (the request is recorded at once): a test
    #: holds the origin's answer back to see who waits for it.
    gate: asyncio.Event | None = None


@dataclass(frozen=True)
class Seen:
    """A request the origin received: method, path with query, header lines in order."""

    method: str
    path_qs: str
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        """The first line of header `name` (case-insensitive), or None."""
        lower = name.lower()
        return next((v for k, v in self.headers if k.lower() == lower), None)


@dataclass
class ScriptedOrigin:
    """Path -> replies; records what it received per path (query ignored for matching)."""

    scripts: dict[str, list[Reply]] = field(default_factory=dict)
    served: dict[str, int] = field(default_factory=dict)
    seen: dict[str, list[Seen]] = field(default_factory=dict)

    def script(self, path: str, *replies: Reply) -> None:
        """Answer `path` with `replies` in order (the last repeats); resets its counters."""
        if not replies:
            raise ValueError("a script needs at least one reply")
        self.scripts[path] = list(replies)
        self.served[path] = 0
        self.seen[path] = []

    def requests(self, path: str) -> list[Seen]:
        """Every request received for `path`, oldest first."""
        return list(self.seen.get(path, []))

    def hits(self, path: str) -> int:
        """How many requests for `path` reached the origin."""
        return len(self.seen.get(path, []))

    def _pick(self, path: str, request: web.Request) -> Reply | None:
        replies = self.scripts.get(path)
        if not replies:
            return None
        n = self.served[path]
        self.served[path] = n + 1
        conditional = [r for r in replies if r.when is not None]
        for reply in conditional:
            if reply.when is not None and reply.when(request):
                return reply
        plain = [r for r in replies if r.when is None] or replies
        return plain[min(n, len(plain) - 1)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.seen.setdefault(path, []).append(
            Seen(request.method, request.path_qs, tuple(request.headers.items()))
        )
        reply = self._pick(path, request)
        if reply is None:
            return web.Response(
                status=404, body=b"unscripted", headers={"Cache-Control": "no-store"}
            )
        if reply.gate is not None:
            await reply.gate.wait()
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in reply.headers:
            headers.add(name, value)
        body = b"" if request.method == "HEAD" or reply.status in (204, 304) else reply.body
        response = web.Response(status=reply.status, body=body or None, headers=headers)
        if reply.status in (204, 304):
            response.headers.pop("Content-Length", None)
        return response

    def app(self) -> web.Application:
        """An aiohttp application answering every path and method from the scripts."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


def scripted_stack(
    tmp: Path, origin: ScriptedOrigin, strict: bool = True, **plugin_overrides: Any
) -> Stack:
    """Scripted origin + sidecar (``tmp/sidecar.sock``) + kongsim running the repository's
    kong.yml with `plugin_overrides`; use as ``async with scripted_stack(...) as stack:``."""
    return Stack(
        tmp,
        unix_sidecar(tmp / "sidecar.sock", clean_env()),
        strict=strict,
        plugin=plugin_overrides,
        sidecar_settings={"timeout_ms": SIDECAR_TIMEOUT_MS},
        upstream_app=origin.app,
    )

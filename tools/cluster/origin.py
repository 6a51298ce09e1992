"""`CountingOrigin`: the example upstream (`deploy/upstream/app.py`) served in this event loop,
counting the requests that reach it per method and path with query (and, when asked, keeping
the bodies it answered them with, so a benchmark can check what its clients were served).

The counts are what the cluster's tests assert on ("a stampede reaches the upstream once"),
so they are taken when a request arrives, before the example app answers it.

Not guaranteed: that a port is still free when the origin binds it; that a counted request
was answered (counts are taken on arrival); that a kept body reached the client (it is kept
when the app returns it). Kept bodies are never dropped: `keep_bodies` is for bounded runs,
not for `make cluster`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable

from aiohttp import web

from deploy.upstream.app import State, build_app

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class CountingOrigin:
    """The example upstream at `listen` (``host:port``), its data in `state`, the requests
    it received in `counts` (keys ``"GET /slow?x=1"``); with `keep_bodies`, the bodies of
    the answers it gave, by the same keys (`answered`)."""

    def __init__(self, listen: str, *, slow_ms: int = 300, keep_bodies: bool = False) -> None:
        self.listen = listen
        self.state = State(slow_ms=slow_ms)
        self.counts: Counter[str] = Counter()
        self._keep_bodies = keep_bodies
        self._bodies: defaultdict[str, list[bytes]] = defaultdict(list)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    @property
    def total(self) -> int:
        """Requests received since start, all paths together."""
        return sum(self.counts.values())

    def hits(self, path_qs: str, method: str = "GET") -> int:
        """Requests received for `method` `path_qs` (path with its query, as sent)."""
        return self.counts[f"{method} {path_qs}"]

    def answered(self, path_qs: str, method: str = "GET") -> list[bytes]:
        """The bodies answered to `method` `path_qs`, in order (empty unless `keep_bodies`;
        a streamed answer's body is not kept)."""
        return list(self._bodies.get(f"{method} {path_qs}", ()))

    def app(self) -> web.Application:
        """The example app with the counting middleware in front of its routes."""

        @web.middleware
        async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
            key = f"{request.method} {request.path_qs}"
            self.counts[key] += 1
            response = await handler(request)
            if self._keep_bodies and isinstance(response, web.Response):
                body = response.body
                if isinstance(body, bytes | bytearray):
                    self._bodies[key].append(bytes(body))
            return response

        app = build_app(self.state)
        app.middlewares.append(count)
        return app

    async def start(self) -> None:
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        host, _, port = self.listen.rpartition(":")
        try:
            await web.TCPSite(runner, host, int(port)).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

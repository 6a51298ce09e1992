"""Fixtures for kongsim's tests: test plugin servers, an echo upstream, config files."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

PLUGINS = Path(__file__).parent / "plugins"
FILES = {
    "ks-exit": "ks_exit.py",
    "ks-response": "ks_response.py",
    "ks-boom": "ks_boom.py",
    "ks-env": "ks_env.py",
}


def plugin_spec(name: str) -> str:
    """The ``NAME=START;QUERY`` spec of one of the test plugins (a dedicated kong-pdk server)."""
    path = PLUGINS / FILES[name]
    return (
        f"{name}={{python}} {path} -p {{prefix}} --socket-name {name}.socket;"
        f"{{python}} {path} --dump"
    )


ALL_PLUGINS = [plugin_spec(n) for n in ("ks-exit", "ks-response", "ks-boom")]


def write_config(directory: Path, text: str, name: str = "kong.yml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


class Upstream:
    """An aiohttp echo server on a free loopback port.

    Answers JSON with what it received, except: a path segment ``slow`` sleeps ``?delay=S``
    seconds first; ``.../status/NNN`` answers that status; a last segment ``big`` answers
    ``?size=N`` bytes. Every answer carries ``X-Upstream-Secret: s`` and ``Via: 1.1 upstream``.
    """

    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.requests: list[dict[str, Any]] = []

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen = {
            "method": request.method,
            "path": request.raw_path,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body": body.decode("utf-8", "replace"),
        }
        self.requests.append(seen)
        extra = {"X-Upstream-Secret": "s", "Via": "1.1 upstream"}
        segments = request.path.strip("/").split("/")
        if "slow" in segments:
            await asyncio.sleep(float(request.query.get("delay", "1")))
        if len(segments) >= 2 and segments[-2] == "status":
            return web.Response(status=int(segments[-1]), text="st", headers=extra)
        if segments[-1] == "big":
            return web.Response(body=b"x" * int(request.query.get("size", "100000")), headers=extra)
        return web.Response(text=json.dumps(seen), content_type="application/json", headers=extra)

    async def start(self) -> Upstream:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[Upstream]:
    up = await Upstream().start()
    yield up
    await up.stop()


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    return tmp_path


def header_dict(pairs: list[list[str]]) -> dict[str, str]:
    """Lower-cased header names of an echoed request → last value."""
    return {k.lower(): v for k, v in pairs}

"""Example upstream API behind Kong in `make run`, the README walkthrough and the e2e tests.

`python -m deploy.upstream.app --listen 127.0.0.1:9000`. Endpoints (JSON unless noted):

- `GET /products` and `GET /products/{id}` - public catalogue data, `Cache-Control:
  public, max-age=60` (`?maxage=N` to change it), with `ETag` and `Last-Modified`;
  answers `304` to a matching `If-None-Match` / `If-Modified-Since`; tagged
  `Surrogate-Key: products product-{id}`.
- `PUT|PATCH|DELETE /products/{id}`, `POST /products` - the write endpoint; changes the
  data (so a stale cache would be visible) and names the tags it touched.
- `GET /slow` - takes `--slow-ms` (default 500 ms) to answer; cacheable for 30 s.
- `GET /delay?ms=N` or `/delay/N` - a ~2 KB cacheable JSON answer after N ms (benchmarks).
- `GET /me` - per-user data from Kong's `X-Consumer-Username` (key-auth); `Cache-Control:
  private` unless `?shared=1` (then `max-age=30`, to show consumer-scoped keys).
- `GET /counter` - a counter bumped on every upstream hit (`X-Upstream-Hits` too), so a
  test can tell a cache hit from a miss; `Cache-Control` can be set with `?cc=...`.
- `GET /flaky` - 200 normally; 503 after `POST /flaky/down` until `POST /flaky/up`
  (stale-if-error demonstrations).
- `GET /cookie` - sets a cookie (must never be shared); `GET /vary` - `Vary: Accept-Language`.

Everything is in memory and binds only where told. Not a production server.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
from email.utils import formatdate, parsedate_to_datetime
from typing import Any

from aiohttp import web

STARTED = time.time()


class State:
    def __init__(self, slow_ms: int) -> None:
        self.slow_ms = slow_ms
        self.products: dict[int, dict[str, Any]] = {
            i: {"id": i, "name": f"product {i}", "price": 10 * i} for i in range(1, 6)
        }
        self.modified: dict[int, float] = dict.fromkeys(self.products, STARTED)
        self.hits = 0
        self.catalogue_hits = 0
        self.not_modified = 0
        self.flaky_down = False


STATE: web.AppKey[State] = web.AppKey("state", State)


def _etag(payload: bytes) -> str:
    return '"' + hashlib.sha256(payload).hexdigest()[:16] + '"'


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    body = json.dumps(data, sort_keys=True).encode()
    return web.Response(
        body=body, status=status, content_type="application/json", headers=headers or {}
    )


def _not_modified(request: web.Request, etag: str, modified: float) -> bool:
    inm = request.headers.get("If-None-Match")
    if inm is not None:
        tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
        return "*" in tags or etag in tags
    ims = request.headers.get("If-Modified-Since")
    if ims:
        try:
            return int(modified) <= parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError):
            return False
    return False


def _catalogue(request: web.Request, data: Any, modified: float, tags: str) -> web.Response:
    body = json.dumps(data, sort_keys=True).encode()
    etag = _etag(body)
    headers = {
        "Cache-Control": f"public, max-age={int(request.query.get('maxage', '60'))}",
        "ETag": etag,
        "Last-Modified": formatdate(modified, usegmt=True),
        "Surrogate-Key": tags,
    }
    request.app[STATE].catalogue_hits += 1
    if _not_modified(request, etag, modified):
        request.app[STATE].not_modified += 1
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="application/json", headers=headers)


def build_app(state: State) -> web.Application:
    routes = web.RouteTableDef()

    @routes.get("/products")
    async def list_products(request: web.Request) -> web.Response:
        items = [state.products[k] for k in sorted(state.products)]
        modified = max(state.modified.values(), default=STARTED)
        return _catalogue(request, items, modified, "products")

    @routes.get("/products/{pid:\\d+}")
    async def get_product(request: web.Request) -> web.Response:
        pid = int(request.match_info["pid"])
        if pid not in state.products:
            return _json({"message": "no such product"}, 404, {"Cache-Control": "max-age=10"})
        return _catalogue(
            request, state.products[pid], state.modified[pid], f"products product-{pid}"
        )

    @routes.post("/products")
    async def create_product(request: web.Request) -> web.Response:
        data = await request.json()
        pid = max(state.products, default=0) + 1
        state.products[pid] = {"id": pid, **data}
        state.modified[pid] = time.time()
        return _json(
            state.products[pid],
            201,
            {"Location": f"/products/{pid}", "Surrogate-Key": "products"},
        )

    @routes.route("PUT", "/products/{pid:\\d+}")
    @routes.route("PATCH", "/products/{pid:\\d+}")
    async def update_product(request: web.Request) -> web.Response:
        pid = int(request.match_info["pid"])
        data = await request.json()
        state.products[pid] = {**state.products.get(pid, {"id": pid}), **data}
        state.modified[pid] = time.time()
        return _json(state.products[pid], headers={"Surrogate-Key": f"products product-{pid}"})

    @routes.delete("/products/{pid:\\d+}")
    async def delete_product(request: web.Request) -> web.Response:
        pid = int(request.match_info["pid"])
        state.products.pop(pid, None)
        state.modified.pop(pid, None)
        return web.Response(status=204, headers={"Surrogate-Key": f"products product-{pid}"})

    @routes.get("/slow")
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(state.slow_ms / 1000)
        state.hits += 1
        return _json(
            {"slow": True, "upstream_hits": state.hits},
            headers={"Cache-Control": "public, max-age=30"},
        )

    @routes.get("/delay")
    @routes.get("/delay/{ms:\\d+}")
    async def delay(request: web.Request) -> web.Response:
        ms = min(int(request.match_info.get("ms") or request.query.get("ms", "0")), 10_000)
        if ms:
            await asyncio.sleep(ms / 1000)
        return _json(
            {"delay_ms": ms, "pad": "x" * 1800},
            headers={"Cache-Control": request.query.get("cc", "public, max-age=300")},
        )

    @routes.get("/me")
    async def me(request: web.Request) -> web.Response:
        user = request.headers.get("X-Consumer-Username", "anonymous")
        cc = "max-age=30" if request.query.get("shared") == "1" else "private, max-age=30"
        return _json({"user": user, "greeting": f"hello {user}"}, headers={"Cache-Control": cc})

    @routes.get("/counter")
    async def counter(request: web.Request) -> web.Response:
        state.hits += 1
        cc = request.query.get("cc", "public, max-age=60")
        return _json(
            {"upstream_hits": state.hits},
            headers={"Cache-Control": cc, "X-Upstream-Hits": str(state.hits)},
        )

    @routes.get("/flaky")
    async def flaky(request: web.Request) -> web.Response:
        if state.flaky_down:
            return _json({"message": "down"}, 503)
        state.hits += 1
        return _json(
            {"ok": True, "upstream_hits": state.hits}, headers={"Cache-Control": "max-age=1"}
        )

    @routes.post("/flaky/{mode:(up|down)}")
    async def flaky_mode(request: web.Request) -> web.Response:
        state.flaky_down = request.match_info["mode"] == "down"
        return _json({"down": state.flaky_down}, headers={"Cache-Control": "no-store"})

    @routes.get("/cookie")
    async def cookie(request: web.Request) -> web.Response:
        state.hits += 1
        resp = _json({"session": state.hits}, headers={"Cache-Control": "max-age=60"})
        resp.set_cookie("session", str(state.hits))
        return resp

    @routes.get("/vary")
    async def vary(request: web.Request) -> web.Response:
        lang = request.headers.get("Accept-Language", "en")[:2]
        greeting = {"en": "hello", "fr": "bonjour", "de": "hallo"}.get(lang, "hello")
        return _json(
            {"greeting": greeting},
            headers={"Cache-Control": "max-age=60", "Vary": "Accept-Language"},
        )

    app = web.Application()
    app[STATE] = state
    app.add_routes(routes)
    return app


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="127.0.0.1:9000", help="HOST:PORT (default 127.0.0.1:9000)")
    p.add_argument("--slow-ms", type=int, default=500)
    p.add_argument("--quiet", action="store_true", help="no access log (benchmarks)")
    a = p.parse_args(argv)
    host, _, port = a.listen.rpartition(":")
    app = build_app(State(a.slow_ms))
    if a.quiet:
        web.run_app(app, host=host, port=int(port), print=None, access_log=None)
    else:
        web.run_app(app, host=host, port=int(port), print=None)


if __name__ == "__main__":
    main()

"""The origin of the fault suite: `/items/{n}` answers a JSON body whose size depends on n,
and counts every request it serves.

Run as a file (``python bench/faults_upstream.py --listen 127.0.0.1:PORT``), never as a
module of the checkout under test, so the same origin serves every checkout. Needs only
aiohttp.

- ``GET /items/{n}``: 200, ``application/json``, no ``Cache-Control`` (the route's
  ``cache_ttl`` decides). Sizes are fixed per n by `body_size`: most bodies are small
  (256 B-16 KiB, log-uniform), a share (``--large-share``) is large (64 KiB-960 KiB, so that
  with the default placement they go to Memcached, and every entry to PostgreSQL). The text
  is random words, so it compresses about as well as real JSON does.
- ``GET /_origin/count``: ``{"items": N}``, the item requests served so far.

Not guaranteed: anything beyond a benchmark's needs; bodies are generated on first use and
kept in memory (tens of MiB for 2,000 items).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random

from aiohttp import web

SMALL = (256, 16 * 1024)
LARGE = (64 * 1024, 960 * 1024)
_VOCABULARY = (
    "alpha beta gamma delta price stock order item brand colour size weight label "
    "shipping return review rating user created updated tag category page total "
    "available warehouse region currency amount discount bundle variant image "
    "thumbnail description title summary detail option value name id sku code"
)
WORDS = tuple(str.split(_VOCABULARY))


def body_size(n: int, large_share: float, seed: int = 0) -> int:
    """The body size of item n (deterministic): small or, with `large_share`, large."""
    rng = random.Random(f"{seed}:{n}")
    low, high = LARGE if rng.random() < large_share else SMALL
    return int(low * (high / low) ** rng.random())


def body(n: int, size: int, seed: int = 0) -> bytes:
    """A JSON document of about `size` bytes for item n."""
    rng = random.Random(f"{seed}:body:{n}")
    head = json.dumps({"id": n, "sku": f"SKU-{rng.getrandbits(40):010X}"})[:-1]
    words: list[str] = []
    length = len(head) + 16
    while length < size:
        chunk = rng.choices(WORDS, k=256)
        chunk.append(str(rng.getrandbits(32)))
        words.extend(chunk)
        length += sum(len(w) + 1 for w in chunk)
    text = " ".join(words)[: max(0, size - len(head) - 14)]
    return f'{head}, "text": "{text}"}}'.encode()


class Origin:
    def __init__(self, large_share: float, delay_ms: float, seed: int) -> None:
        self.large_share = large_share
        self.delay_s = delay_ms / 1000
        self.seed = seed
        self.items = 0
        self._bodies: dict[int, bytes] = {}

    async def item(self, request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        self.items += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        payload = self._bodies.get(n)
        if payload is None:
            payload = body(n, body_size(n, self.large_share, self.seed), self.seed)
            self._bodies[n] = payload
        return web.Response(body=payload, content_type="application/json")

    async def count(self, request: web.Request) -> web.Response:
        return web.json_response({"items": self.items})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/items/{n:\\d+}", self.item)
        app.router.add_get("/_origin/count", self.count)
        return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    parser.add_argument("--large-share", type=float, default=0.04)
    parser.add_argument("--delay-ms", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    origin = Origin(args.large_share, args.delay_ms, args.seed)
    web.run_app(origin.app(), host=host, port=int(port), print=None, access_log=None)


if __name__ == "__main__":
    main()

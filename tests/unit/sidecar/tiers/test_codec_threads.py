"""The codec is safe to call from many threads at once (the Memcached tier encodes and
decodes on its thread pool). A shared zstd object crashed the process with SIGSEGV, so the
hammering runs in a child process: a crash fails this test instead of killing pytest."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

_HAMMER = textwrap.dedent(
    """
    import os, sys, threading
    from sidecar.tiers import codec
    from sidecar.core.model import CachedResponse

    bodies = [os.urandom(500) + bytes([65 + i]) * (4000 + 20_000 * i) for i in range(4)]
    entries = [
        CachedResponse(status=200, headers=((b"a", b"b"),), body=b, stored_at_ms=1, ttl_ms=9)
        for b in bodies
    ]
    errors = []

    def work(n):
        try:
            for i in range(600):
                entry = entries[(n + i) % len(entries)]
                if codec.decode(codec.encode(entry)).body != entry.body:
                    raise AssertionError("round trip changed the body")
                value, body = codec.encode_split(entry, 256)
                assert body is not None
                if codec.decode(value, body[1]).body != entry.body:
                    raise AssertionError("split round trip changed the body")
        except BaseException as exc:  # reported by the parent
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("errors:", errors[:3])
    sys.exit(1 if errors else 0)
    """
)


def test_encode_and_decode_from_many_threads_at_once() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _HAMMER],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    # -11 (SIGSEGV) before the codec kept one zstd object per thread; 1 = wrong bodies
    assert done.returncode == 0, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])

"""`bench stampede --quick` end to end: real clusters (NGINX, kongsim nodes with the plugin
server, sidecars, the counting origin) and the behaviour users rely on: a burst of concurrent
cold requests reaches the origin once, on one node and on two nodes sharing their tiers,
and every client gets 200 and the origin's body; the same burst without the cache makes N.

Needs the shared services of `make services-up` (`make test` starts them). The run is a
process group of its own, so a hung run is stopped with everything it started.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_bench_smoke import run_bench
from tools.cluster import ServicesDownError, shared_settings

pytestmark = pytest.mark.e2e
#: The quick run takes ~40 s on a 2-core machine; below the suite's 120 s per-test timeout.
RUN_TIMEOUT_S = 100.0


def test_a_cold_burst_reaches_the_origin_once_on_one_node_and_on_two_sharing(
    tmp_path: Path,
) -> None:
    try:
        shared_settings()
    except ServicesDownError as exc:
        pytest.fail(f"{exc} (`make test` does)")
    png = tmp_path / "stampede.png"
    report = run_bench("stampede", "--quick", "--png", str(png), timeout_s=RUN_TIMEOUT_S)
    assert report["scenario"] == "stampede"
    bursts = report["bursts"]
    assert {b["mode"] for b in bursts} == {"1-node", "2-node-shared", "2-node-memory"}
    for b in bursts:
        where = f"{b['mode']} {b['entry']} {b['route']} N={b['n']} {b['path']}"
        assert b["correct"], f"{where}: a client got no 200 or a wrong body: {b}"
        assert b["overlapped"], f"{where}: the burst did not overlap: {b}"
        if b["route"] == "no-cache":
            assert b["fetches"] == b["n"], f"{where}: without the cache every request goes: {b}"
        elif b["mode"] == "2-node-memory":
            assert b["fetches"] == 2, f"{where}: one fetch per node expected: {b}"
        else:
            assert b["fetches"] == 1, f"{where}: {b['fetches']} origin fetches: {b}"
    cached = {(b["mode"], b["entry"], b["n"]) for b in bursts if b["route"] == "cached"}
    assert cached == {
        (m, e, n)
        for m in ("1-node", "2-node-shared", "2-node-memory")
        for e in ("direct", "nginx")
        for n in (8, 32)
    }
    rows = {row["name"].split(":")[0]: row for row in report["headline"]}
    for name in ("stampede 1-node", "stampede 2-node-shared"):
        assert (rows[name]["value"], rows[name]["target"], rows[name]["met"]) == (1.0, "1", True)
    assert rows["stampede 2-node-memory"]["met"] is None
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

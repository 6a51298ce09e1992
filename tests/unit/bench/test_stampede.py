"""`bench stampede`'s pure parts: the body and overlap checks, the cache-status label, the
summary, the per-mode verdict and the headline rows; the no-cache route it adds to kong.yml;
and its command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench import stampede
from bench.stampede_run import NO_CACHE_HOST, NO_CACHE_ROUTE, no_cache_config
from bench.stampede_verdict import (
    CACHED,
    MODES,
    NO_CACHE,
    Burst,
    Reply,
    burst_of,
    cache_label,
    headline,
    mode,
    mode_verdict,
    overlapped,
    summary,
    wrong_bodies,
)

ROOT = Path(__file__).resolve().parents[3]


def reply(body: bytes = b"a", *, status: int = 200, sent: float = 0.0, done: float = 1.0) -> Reply:
    return Reply(status, body, "Hit", sent, done)


def made(
    mode_name: str, route: str, n: int, fetches: int, *, correct: bool = True, entry: str = "nginx"
) -> Burst:
    """A burst of `n` replies of which the origin saw `fetches` (all bodies right unless not
    `correct`: then one client got a body the origin never sent)."""
    replies = [reply(b"a") for _ in range(n)]
    if not correct:
        replies[0] = reply(b"other")
    return burst_of(mode_name, entry, route, "/slow?x", replies, fetches, [b"a"])


# ---------------------------------------------------------------- per burst


def test_a_body_the_origin_never_answered_for_the_url_is_wrong() -> None:
    replies = [reply(b"one"), reply(b"two"), reply(b"three"), reply(b"", status=502)]
    assert wrong_bodies(replies, [b"one", b"two"]) == 1  # the 502 counts by its status
    assert wrong_bodies(replies[:2], [b"one", b"two"]) == 0
    assert wrong_bodies([reply(b"one")], []) == 1


def test_a_burst_overlaps_only_when_the_last_was_sent_before_the_first_answer() -> None:
    assert overlapped([reply(sent=0.0, done=0.3), reply(sent=0.01, done=0.31)])
    # the second request left after the first answer: it could have been a plain hit
    assert not overlapped([reply(sent=0.0, done=0.3), reply(sent=0.35, done=0.36)])
    assert not overlapped([])


def test_the_cache_label_names_why_a_request_went_to_the_origin() -> None:
    assert cache_label("Hit", "strata; hit; ttl=30") == "Hit"
    assert (
        cache_label("Bypass", "strata; fwd=bypass; detail=sidecar-unavailable")
        == "Bypass (sidecar-unavailable)"
    )
    assert cache_label("Miss", 'strata; fwd=uri-miss; detail="store-failed"') == (
        "Miss (store-failed)"
    )
    assert cache_label("Miss", "") == "Miss"
    assert cache_label("", "strata; hit") == ""


def test_a_burst_is_correct_only_with_every_client_served_200_and_a_right_body() -> None:
    replies = [reply(b"a", sent=0.0, done=0.3), reply(b"a", sent=0.01, done=0.5)]
    b = burst_of("1-node", "direct", CACHED, "/slow?x", replies, 1, [b"a"])
    assert (b.n, b.fetches, b.correct, b.overlapped) == (2, 1, True, True)
    assert b.slowest_ms == 500.0  # from the first request sent to the last answer
    assert b.cache == {"Hit": 2}
    assert not made("1-node", CACHED, 4, 1, correct=False).correct
    failed = [reply(), Reply(0, b"", "", 0.0, 1.0, "ServerDisconnectedError")]
    b = burst_of("1-node", "direct", CACHED, "/slow?x", failed, 1, [b"a"])
    assert not b.correct
    assert b.as_json()["errors"] == ["ServerDisconnectedError"]
    assert b.as_json()["statuses"] == {"0": 1, "200": 1}


# ---------------------------------------------------------------- summary and verdict


def bursts_of(counts: dict[tuple[str, str, int], Sequence[int]]) -> list[Burst]:
    return [made(m, route, n, f) for (m, route, n), fs in counts.items() for f in fs]


def test_the_summary_keeps_every_count_per_mode_route_and_size() -> None:
    bursts = bursts_of(
        {
            ("1-node", CACHED, 8): [1, 1],
            ("1-node", NO_CACHE, 8): [8, 8],
            ("1-node", CACHED, 32): [1, 3],
        }
    )
    s = summary(bursts)
    assert s["1-node"][CACHED]["8"]["fetches"] == [1, 1]
    assert s["1-node"][CACHED]["32"] | {"slowest_ms_max": 0} == {
        "bursts": 2,
        "fetches": [1, 3],
        "max_fetches": 3,
        "mean_fetches": 2.0,
        "all_correct": True,
        "all_overlapped": True,
        "slowest_ms_max": 0,
    }
    assert s["1-node"][NO_CACHE]["8"]["max_fetches"] == 8


def test_a_mode_is_as_expected_only_when_every_cached_burst_made_its_expected_count() -> None:
    shared = mode("2-node-shared")
    ok = bursts_of({("2-node-shared", CACHED, 8): [1, 1], ("2-node-shared", NO_CACHE, 8): [8]})
    verdict = mode_verdict(shared, ok)
    assert verdict["as_expected"] and verdict["baseline_is_n"] and verdict["all_correct"]
    one_more = [*ok, made("2-node-shared", CACHED, 32, 2)]
    assert not mode_verdict(shared, one_more)["as_expected"]
    # one fetch but a client served a wrong body: not what users rely on
    wrong = [*ok, made("2-node-shared", CACHED, 8, 1, correct=False)]
    assert not mode_verdict(shared, wrong)["as_expected"]
    # a baseline burst below N means the no-cache route did not make N fetches
    short = [*ok, made("2-node-shared", NO_CACHE, 8, 7)]
    assert not mode_verdict(shared, short)["baseline_is_n"]
    # memory-only pair: 2 is the expected figure (one fetch per node)
    memory = bursts_of({("2-node-memory", CACHED, 8): [2, 2]})
    assert mode_verdict(mode("2-node-memory"), memory)["as_expected"]
    assert not mode_verdict(mode("2-node-memory"), bursts_of({("2-node-memory", CACHED, 8): [1]}))[
        "as_expected"
    ]
    assert not mode_verdict(shared, [])["as_expected"]  # nothing measured is not a pass


def test_the_headline_has_a_target_for_one_node_and_the_shared_pair_only() -> None:
    bursts = bursts_of(
        {
            ("1-node", CACHED, 8): [1],
            ("1-node", CACHED, 64): [1],
            ("1-node", NO_CACHE, 8): [8],
            ("1-node", NO_CACHE, 64): [64, 63],
            ("2-node-shared", CACHED, 8): [1, 2],
            ("2-node-shared", NO_CACHE, 8): [8],
            ("2-node-memory", CACHED, 8): [2],
        }
    )
    rows = {row["name"].split(":")[0]: row for row in headline(bursts)}
    assert list(rows) == ["stampede 1-node", "stampede 2-node-shared", "stampede 2-node-memory"]
    one = rows["stampede 1-node"]
    assert (one["value"], one["unit"], one["target"], one["met"]) == (1.0, "fetches", "1", True)
    assert "N = 8/64" in one["name"]
    assert one["baseline"].endswith("8 / 63 fetches per burst for N = 8 / 64")  # the fewest
    pair = rows["stampede 2-node-shared"]
    assert (pair["value"], pair["met"]) == (2.0, False)  # the worst burst decides
    memory = rows["stampede 2-node-memory"]
    assert (memory["target"], memory["met"]) == (None, None)
    assert "expected 2" in memory["name"]
    assert memory["baseline"] == "no baseline measured"
    for row in rows.values():
        assert set(row) == {"name", "value", "unit", "baseline", "target", "met"}


def test_modes_are_known_by_name() -> None:
    assert [m.name for m in MODES] == ["1-node", "2-node-shared", "2-node-memory"]
    assert [(m.nodes, m.shared, m.expected) for m in MODES] == [
        (1, False, 1),
        (2, True, 1),
        (2, False, 2),
    ]
    with pytest.raises(ValueError, match="1-node, 2-node-shared, 2-node-memory"):
        mode("3-node")


# ---------------------------------------------------------------- the baseline route


def test_the_no_cache_route_serves_slow_for_its_own_host_without_a_plugin() -> None:
    config: dict[str, Any] = yaml.safe_load((ROOT / "kong.yml").read_text())
    before = [r["name"] for s in config["services"] for r in s["routes"]]
    out = no_cache_config(config)
    routes = {r["name"]: r for s in out["services"] for r in s["routes"]}
    assert list(routes) == [*before, NO_CACHE_ROUTE]
    added = routes[NO_CACHE_ROUTE]
    assert added["hosts"] == [NO_CACHE_HOST] and added["paths"] == ["/slow"]
    assert "plugins" not in added
    # on the same service as the cached /slow route, so the same upstream answers
    service = next(s for s in out["services"] if NO_CACHE_ROUTE in [r["name"] for r in s["routes"]])
    assert any(r["name"] == "slow" for r in service["routes"])
    with pytest.raises(ValueError, match="/slow"):
        no_cache_config({"services": [{"name": "x", "routes": [{"paths": ["/a"]}]}]})


# ---------------------------------------------------------------- command line


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    stampede.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_the_command_line_defaults_and_checks() -> None:
    args = parse()
    assert args.sizes == [8, 32, 64]
    assert [m.name for m in args.modes] == [m.name for m in MODES]
    assert args.png == Path(".run/bench/stampede.png")
    assert parse("--png", "").png is None
    assert [m.name for m in parse("--modes", "1-node,2-node-memory").modes] == [
        "1-node",
        "2-node-memory",
    ]
    for bad in (("--sizes", "1,8"), ("--sizes", ""), ("--modes", "1-node,4-node")):
        with pytest.raises(SystemExit):
            parse(*bad)


def test_a_run_without_a_shared_mode_needs_no_services() -> None:
    assert stampede.services_missing([mode("1-node"), mode("2-node-memory")]) is None


def test_the_docstring_cites_kong_proxy_cache_and_the_first_line_is_the_help() -> None:
    doc = stampede.__doc__ or ""
    assert doc.splitlines()[0].startswith("stampede: ")
    assert "kong/plugins/proxy-cache/handler.lua" in doc and "3.9.3" in doc
    assert stampede.KONG_BASELINE["lookup"].startswith("l. 272")

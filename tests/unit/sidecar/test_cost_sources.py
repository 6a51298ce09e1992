"""`strata cost`'s sources: /metrics pages (parsed, windowed, refused when they are not a
Strata sidecar's) and a Prometheus server's query API (a local fake), and the CLI's usage
errors and exit codes."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from sidecar.core.model import Footprint, TierSnapshot, Written
from sidecar.cost.cli import main, parse_duration
from sidecar.cost.exposition import SourceError, parse_page, reading_of
from sidecar.cost.model import MemoryFootprint, Stages
from sidecar.cost.sources import metrics_url, node_key, read_pages, read_prometheus
from sidecar.observability.metrics import PrometheusObserver, TierCollector

Handler = Callable[[str], tuple[int, str]]


def sidecar_page(hits: int = 3, body: int = 1000, written: int = 10) -> str:
    """A real sidecar's page (its own registry and collectors) after `hits` hits."""
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    footprint = Footprint(logical=4000, body=3000, body_distinct=1000, body_stored=250)
    registry.register(
        TierCollector(
            lambda: [
                TierSnapshot("memory", 3, 1500, 10_000, footprint=footprint),
                TierSnapshot("redis", 0, 9000, 0),
            ]
        )
    )
    for _ in range(hits):
        observer.lookup("hit", "memory")
        observer.served("hit", "memory", body)
    observer.lookup("miss", "")
    observer.written("redis", Written(written, 8, 6, 2, 5))
    observer.admission_refused("memory", 7)
    return generate_latest(registry).decode()


PLUGIN_PAGE = """# TYPE strata_plugin_requests_total counter
strata_plugin_requests_total{result="hit"} 9
# TYPE strata_plugin_hits_total counter
strata_plugin_hits_total{tier="near"} 4
strata_plugin_hits_total{tier="memory"} 5
# TYPE strata_plugin_near_cache_bytes gauge
strata_plugin_near_cache_bytes 2048
"""


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], str]]:
    servers: list[ThreadingHTTPServer] = []

    def start(answer: Handler) -> str:
        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = answer(self.path)
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_sidecar_page_is_read_since_its_start() -> None:
    page = parse_page(sidecar_page(), "s")
    assert page.kind == "sidecar"
    r = reading_of(page, None, 100.0)
    assert r.held == {"memory": 1500, "redis": 9000}
    assert r.footprint == MemoryFootprint(4000, 3000, 1000, 250)
    assert r.lookups == {"hit": 3, "miss": 1}
    assert r.served == {"hit": 3000}
    assert r.written == {"redis": Stages(10, 8, 6, 2, 5)}
    assert r.refused == {"memory": 7}


def test_two_pages_give_the_window_and_a_reset_counts_from_zero() -> None:
    before = parse_page(sidecar_page(hits=3, written=10), "s")
    after = parse_page(sidecar_page(hits=5, written=4), "s")  # written: reset to 4
    r = reading_of(after, before, 60.0)
    assert r.lookups["hit"] == 2 and r.lookups["miss"] == 0
    assert r.served == {"hit": 2000}
    assert r.written["redis"].logical == 4
    assert r.window_s == 60.0


def test_a_plugin_page_gives_near_cache_hits_and_bytes() -> None:
    r = reading_of(parse_page(PLUGIN_PAGE, "p"), None, 10.0)
    assert not r.sidecar and r.near_hits == 4 and r.held == {"near": 2048}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("# TYPE go_goroutines gauge\ngo_goroutines 7\n", "not a Strata sidecar"),
        ("<html>nope</html>\n", "not Prometheus text format"),
        (
            '# TYPE strata_tier_bytes gauge\nstrata_tier_bytes{tier="memory"} 1\n',
            "without strata_lookups",
        ),
    ],
)
def test_pages_that_are_not_a_current_sidecars_are_refused(text: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        parse_page(text, "http://x/metrics")


def test_metrics_url_adds_the_path_and_refuses_other_schemes() -> None:
    assert metrics_url("http://127.0.0.1:9464") == "http://127.0.0.1:9464/metrics"
    assert metrics_url("http://h:1/custom") == "http://h:1/custom"
    with pytest.raises(SourceError, match="not an http"):
        metrics_url("ftp://h/metrics")


def test_read_pages_over_a_window(serve: Callable[[Handler], str]) -> None:
    pages = iter([sidecar_page(hits=1), PLUGIN_PAGE, sidecar_page(hits=4), PLUGIN_PAGE])
    sidecar_url = serve(lambda path: (200, next(pages)))
    slept: list[float] = []
    readings, notes = read_pages([sidecar_url, sidecar_url], 30.0, sleep=slept.append)
    assert slept == [30.0]
    assert readings[0].lookups["hit"] == 3 and readings[0].window_s >= 30.0
    assert not readings[1].sidecar and readings[1].near_hits == 0
    assert "window of 30 s" in notes[0]


def test_read_pages_since_start_and_the_plugins_window(serve: Callable[[Handler], str]) -> None:
    sidecar_url = serve(lambda path: (200, sidecar_page()))
    plugin_url = serve(lambda path: (200, PLUGIN_PAGE))
    page = parse_page(sidecar_page(), "x")
    started = next(iter(page.values("process_start_time_seconds").values()))
    readings, notes = read_pages([sidecar_url, plugin_url], None, now=lambda: started + 500.0)
    assert [r.window_s for r in readings] == [500.0, 500.0]
    assert any("plugin servers export no start time" in n for n in notes)


def test_unreachable_and_failing_urls_are_named(serve: Callable[[Handler], str]) -> None:
    missing = serve(lambda path: (404, "no"))
    with pytest.raises(SourceError, match=r"/metrics: HTTP 404"):
        read_pages([missing], None)
    with pytest.raises(SourceError, match=r"127\.0\.0\.1:9/metrics: unreachable"):
        read_pages(["http://127.0.0.1:9"], None, timeout=2.0)
    plugin_only = serve(lambda path: (200, PLUGIN_PAGE))
    with pytest.raises(SourceError, match="no sidecar"):
        read_pages([plugin_only], None)


def _vector(*series: tuple[dict[str, str], float]) -> str:
    result = [{"metric": m, "value": [0, str(v)]} for m, v in series]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}})


def fake_prometheus(query: str) -> str:
    q = query
    if q.startswith("count(strata_tier_bytes"):
        return _vector(({}, 2))
    if q == 'strata_tier_logical_bytes{tier="memory"}':
        return _vector(({"tier": "memory"}, 100))
    if q.startswith('sum(strata_tier_bytes{tier="memory"}'):
        return _vector(({}, 3000))
    if q.startswith("max by (tier) (strata_tier_bytes"):
        return _vector(({"tier": "redis"}, 9000), ({"tier": "postgres"}, 50_000))
    if q.startswith("sum(strata_plugin_near_cache_bytes"):
        return _vector(({}, 512))
    if q.startswith("sum by (stage) (strata_tier_body_bytes"):
        return _vector(
            ({"stage": "raw"}, 80), ({"stage": "distinct"}, 40), ({"stage": "stored"}, 10)
        )
    if q.startswith("sum(strata_tier_logical_bytes"):
        return _vector(({}, 200))
    if q.startswith("max(strata_tier_logical_bytes"):
        return _vector(({}, 120))
    if "strata_tier_written_bytes_total" in q:
        return _vector(
            ({"tier": "redis", "stage": "logical"}, 40), ({"tier": "redis", "stage": "stored"}, 10)
        )
    if "strata_lookups_total" in q:
        assert "[3600s]" in q
        return _vector(({"outcome": "hit"}, 90), ({"outcome": "miss"}, 10))
    if "strata_served_body_bytes_total" in q:
        return _vector(({"outcome": "hit"}, 9000))
    if "strata_admission_refused_bytes_total" in q:
        return _vector(({"tier": "memory"}, 5), ({"tier": "redis"}, 50))
    if "strata_promoted_bytes_total" in q:
        return _vector(({"tier": "redis"}, 30))
    if "strata_plugin_hits_total" in q:
        return _vector(({}, 30))
    raise AssertionError(q)


def _prometheus_handler(path: str) -> tuple[int, str]:
    parts = urllib.parse.urlsplit(path)
    assert parts.path == "/api/v1/query"
    return 200, fake_prometheus(urllib.parse.parse_qs(parts.query)["query"][0])


def test_read_prometheus_sums_nodes_and_counts_shared_tiers_once(
    serve: Callable[[Handler], str],
) -> None:
    url = serve(_prometheus_handler)
    (r,), notes = read_prometheus(url, 3600.0)
    assert r.nodes == 2 and r.window_s == 3600.0
    assert r.held == {"memory": 3000, "redis": 9000, "postgres": 50_000, "near": 512}
    assert r.footprint == MemoryFootprint(200, 80, 40, 10)
    assert r.largest_logical == 120
    assert r.lookups == {"hit": 90, "miss": 10}
    assert r.written["redis"] == Stages(logical=40, stored=10)
    assert r.near_hits == 30 and r.refused == {"memory": 5, "redis": 50}
    assert r.promoted == {"redis": 30}
    assert "2 sidecar(s)" in notes[0]


def test_prometheus_errors_are_named(serve: Callable[[Handler], str]) -> None:
    empty = serve(lambda path: (200, _vector()))
    with pytest.raises(SourceError, match="scrapes no Strata sidecar"):
        read_prometheus(empty, 60.0)
    html = serve(lambda path: (200, "<html>"))
    with pytest.raises(SourceError, match="not a Prometheus query API answer"):
        read_prometheus(html, 60.0)
    failed = serve(lambda path: (200, json.dumps({"status": "error", "error": "bad query"})))
    with pytest.raises(SourceError, match="bad query"):
        read_prometheus(failed, 60.0)


def test_the_cli_reports_from_prometheus_as_json(
    serve: Callable[[Handler], str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve(_prometheus_handler)
    assert main(["--prometheus", url, "--range", "1h", "--json", "--ram-gb-month", "5"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["nodes"] == 2 and report["prices"]["ram_gb_month"] == 5.0
    assert report["origin_requests_avoided"]["window"] == 120  # 90 hits + 30 near
    # the largest node's memory logical bytes; redis (9,000 x 40/10 before) left out
    assert report["monthly"]["naive"]["bytes_per_node"] == 120
    assert report["admission_kept_out_bytes"] == {"memory": 5, "redis": 20}
    assert main(["--prometheus", url]) == 0
    assert "Monthly cost" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "give --metrics URL"),
        (["--metrics", "http://a", "--prometheus", "http://b"], "not both"),
        (["--prometheus", "http://b", "--window", "10"], "--window goes with --metrics"),
        (["--metrics", "http://a", "--ram-gb-month", "-1"], "--ram-gb-month"),
        (["--metrics", "http://a", "--egress-per-gb", "nan"], "--egress-per-gb"),
        (["--metrics", "http://a", "--window", "0"], "not a positive duration"),
        (["--prometheus", "http://b", "--range", "soon"], "not a positive duration"),
        (["--metrics", "http://a", "--nodes", "0"], "--nodes"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_source_failure_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--metrics", "http://127.0.0.1:9", "--timeout", "2"]) == 1
    assert "unreachable" in capsys.readouterr().err


def test_durations() -> None:
    assert parse_duration("90") == 90
    assert parse_duration("15m") == 900
    assert parse_duration("1h") == 3600
    assert parse_duration("7d") == 7 * 86400


# --- issue 15: the review's findings -------------------------------------------------------


def with_sample(text: str, name: str, value: str) -> str:
    """`text` with the value of the first sample line of `name` replaced by `value`."""
    lines = text.splitlines()
    i = next(i for i, x in enumerate(lines) if x.startswith((f"{name}{{", f"{name} ")))
    lines[i] = lines[i].rsplit(" ", 1)[0] + " " + value
    return "\n".join(lines) + "\n"


def lookups_page(memory_hits: int, redis_hits: int) -> str:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    registry.register(TierCollector(lambda: [TierSnapshot("memory", 0, 0, 0, footprint=None)]))
    for tier, hits in (("memory", memory_hits), ("redis", redis_hits)):
        for _ in range(hits):
            observer.lookup("hit", tier)
    return generate_latest(registry).decode()


def test_a_reset_is_seen_series_by_series() -> None:
    """Finding 2: memory went 10 -> 2 (reset), redis 0 -> 20; summed over the label set the
    hits rose 10 -> 22 and the reset was missed (12 instead of 2 + 20)."""
    before = parse_page(lookups_page(10, 0), "s")
    after = parse_page(lookups_page(2, 20), "s")
    assert reading_of(after, before, 60.0).lookups["hit"] == 22


def test_a_restart_in_the_window_counts_from_the_restart_and_says_so(
    serve: Callable[[Handler], str],
) -> None:
    """Finding 2: the new process counted past the old one's values (5 hits > 3): only its
    changed start time tells."""
    first = sidecar_page(hits=3)
    started = float(parse_page(first, "x").values("process_start_time_seconds")[()])
    second = with_sample(sidecar_page(hits=5), "process_start_time_seconds", str(started + 100))
    pages = iter([first, second])
    url = serve(lambda path: (200, next(pages)))
    (r,), notes = read_pages([url], 30.0, sleep=lambda s: None)
    assert r.lookups == {"hit": 5, "miss": 1}
    assert r.window_s >= 30.0
    assert any("restarted during the window" in n and "lost" in n for n in notes)


@pytest.mark.parametrize("value", ["NaN", "+Inf", "-Inf", "-5", "1e308", "9.3e18"])
@pytest.mark.parametrize(
    "family", ["strata_lookups_total", "strata_tier_bytes", "process_start_time_seconds"]
)
def test_a_sample_out_of_range_refuses_the_page(family: str, value: str) -> None:
    """Finding 4: NaN, infinities, negative and huge values gave made-up reports."""
    text = with_sample(sidecar_page(), family, value)
    with pytest.raises(SourceError, match=rf"^http://x/metrics: {family}: sample value"):
        parse_page(text, "http://x/metrics")


def test_a_nan_page_exits_1_and_prints_no_json(
    serve: Callable[[Handler], str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve(lambda path: (200, with_sample(sidecar_page(), "strata_lookups_total", "NaN")))
    assert main(["--metrics", url, "--json"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and f"{url}/metrics: strata_lookups_total" in err


@pytest.mark.parametrize("value", ["NaN", "+Inf", "-5", "1e308"])
def test_prometheus_values_out_of_range_name_the_family(
    serve: Callable[[Handler], str], value: str
) -> None:
    """Finding 4: an OverflowError traceback (inf) or a misleading message (NaN, -5)."""
    answer = {"status": "success", "data": {"result": [{"metric": {}, "value": [0, value]}]}}
    url = serve(lambda path: (200, json.dumps(answer)))
    with pytest.raises(SourceError, match=rf"^{url}: strata_tier_bytes: sample value"):
        read_prometheus(url, 60.0)


def test_prometheus_explains_a_bad_query_and_refuses_a_flood(
    serve: Callable[[Handler], str],
) -> None:
    bad = serve(lambda path: (400, json.dumps({"status": "error", "error": "parse error"})))
    with pytest.raises(SourceError, match=r"query failed: parse error$"):
        read_prometheus(bad, 60.0)
    flood = _vector(*(({"instance": str(i)}, 1.0) for i in range(10_001)))
    many = serve(lambda path: (200, flood))
    with pytest.raises(SourceError, match="10,001 series in one answer"):
        read_prometheus(many, 60.0)


def test_a_start_time_ahead_of_the_clock_or_a_few_seconds_ago_is_not_extrapolated(
    serve: Callable[[Handler], str],
) -> None:
    """Finding 6: a start time in the future became a 1 s window, x 2.6 million."""
    text = sidecar_page()
    started = float(parse_page(text, "x").values("process_start_time_seconds")[()])
    url = serve(lambda path: (200, text))
    with pytest.raises(SourceError, match=r"ahead of this machine's clock \(clock skew\?\)"):
        read_pages([url], None, now=lambda: started - 50.0)
    with pytest.raises(SourceError, match=r"started 5\.0 s ago.*use --window"):
        read_pages([url], None, now=lambda: started + 5.0)
    (r,), _ = read_pages([url], None, now=lambda: started + 10.0)
    assert r.window_s == 10.0


def test_a_repeated_family_or_sample_refuses_the_page() -> None:
    """Finding 7: the last of two blocks or lines was taken silently."""
    text = sidecar_page()
    dup_family = text + '# TYPE strata_tier_bytes gauge\nstrata_tier_bytes{tier="memory"} 9\n'
    with pytest.raises(SourceError, match=r"^u: strata_tier_bytes: the family appears twice"):
        parse_page(dup_family, "u")
    dup_line = text + 'strata_lookups_total{outcome="hit",tier="memory"} 1e9\n'
    with pytest.raises(SourceError, match=r"^u: strata_lookups_total: a sample appears twice"):
        parse_page(dup_line, "u")


def test_node_key_spells_one_page_one_way() -> None:
    key = "http://h:80/metrics"
    assert node_key("http://h") == key
    assert node_key("HTTP://H:80/metrics/") == key
    assert node_key("http://h/metrics") == key
    assert node_key("https://h/metrics") == "https://h:443/metrics"
    assert node_key("http://h:81") != key


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--metrics", "http://127.0.0.1:9", "--metrics", "http://127.0.0.1:9/"], "same page"),
        (["--metrics", "http://a/metrics", "--metrics", "HTTP://A:80/metrics/"], "same page"),
        (["--prometheus", "http://b", "--range", "0.5"], "whole seconds from 1s to 365d"),
        (["--prometheus", "http://b", "--range", "1.5"], "whole seconds from 1s to 365d"),
        (["--prometheus", "http://b", "--range", "400d"], "whole seconds from 1s to 365d"),
        (["--metrics", "http://a", "--window", "2d"], "from 1s to 1d"),
        (["--metrics", "http://a", "--window", "0.5"], "from 1s to 1d"),
    ],
)
def test_review_usage_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Finding 7: a node given twice was counted twice; --range 0.5 was an HTTP 400."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1

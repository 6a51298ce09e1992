"""Running a background refresh (`refresh.run`) with a fake HTTP fetch and a recording
sidecar client: what is stored (a 304 merged with renewed freshness; a new response as a
miss would store it), when the lease is released instead and the stale copy kept (5xx,
timeout, connection failure, not storable), and the origin's health it feeds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from kong_plugin import refresh, wire
from kong_plugin.origin import OriginHealth
from kong_plugin.refresh_http import FailureKind, Fetched, FetchError
from kong_plugin.refresh_pool import Outcome
from kong_plugin.sidecar_jobs import STORE_TIMEOUT_S
from kong_plugin.upstream_target import Destination
from tests.support.refresh_fakes import (
    NOW,
    RecordingClient,
    config,
    lease_holder,
    planned,
    stale_entry,
)

LATER = NOW + 2.0
JSON = {"content-type": "application/json"}


class FakeFetch:
    """Answers every refresh with `answer` (or raises it) and records the calls."""

    def __init__(self, answer: Fetched | FetchError) -> None:
        self.answer = answer
        self.calls: list[tuple[Destination, tuple[tuple[str, str], ...], float, int]] = []

    def __call__(
        self, dest: Destination, headers: Sequence[tuple[str, str]], timeout_s: float, max_body: int
    ) -> Fetched:
        self.calls.append((dest, tuple(headers), timeout_s, max_body))
        if isinstance(self.answer, FetchError):
            raise self.answer
        return self.answer


def run(
    answer: Fetched | FetchError,
    client: RecordingClient | None = None,
    origins: OriginHealth | None = None,
    **plan: Any,
) -> tuple[Outcome, str, RecordingClient, FakeFetch]:
    client = client or RecordingClient()
    fetch = FakeFetch(answer)
    cfg = plan.pop("cfg", config())
    job = planned(cfg=cfg, **plan)
    outcome, why = refresh.run(
        job, cfg, client, origins or OriginHealth(), fetcher=fetch, clock=lambda: LATER
    )
    return outcome, why, client, fetch


def test_a_304_stores_the_entry_again_with_the_304s_headers_and_renewed_freshness() -> None:
    answer = Fetched(304, {"cache-control": "public, max-age=120", "etag": '"v1"'}, b"")
    outcome, _, client, fetch = run(answer)
    assert outcome is Outcome.REVALIDATED
    assert client.released == []  # the store ends the lease
    (stored,) = client.stores
    entry = wire.entry_from_pb(stored["entry"])
    assert entry.body == b'{"v":1}' and entry.status == 200
    assert entry.headers.get("cache-control") == "public, max-age=120"
    assert entry.timing.ttl == 120 and entry.timing.age(LATER) < 1
    assert stored["key"] == b"v2:route-1:k" and stored["route"] == "v2:route-1:"
    assert stored["timeout_s"] == max(client.timeout_s, STORE_TIMEOUT_S)
    ((_, headers, timeout_s, max_body),) = fetch.calls
    assert headers == (("If-None-Match", '"v1"'),)
    assert (timeout_s, max_body) == (10.0, config().max_body_bytes)


def test_a_new_200_is_stored_as_a_miss_would_store_it() -> None:
    headers = {**JSON, "cache-control": "public, max-age=30", "etag": '"v2"', "vary": "Accept"}
    lines = [(b"accept", b"application/json")]
    cfg = config(background_refresh={"forward_headers": ["Accept"]})
    outcome, _, client, _ = run(Fetched(200, headers, b'{"v":2}'), headers=lines, cfg=cfg)
    assert outcome is Outcome.REFRESHED
    (stored,) = client.stores
    entry = wire.entry_from_pb(stored["entry"])
    assert (entry.body, entry.timing.ttl, entry.vary) == (b'{"v":2}', 30, ("accept",))
    assert entry.headers.get("etag") == '"v2"'
    assert stored["lines"] == lines  # the variant is filed by what the refresh sent


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (Fetched(500, {"content-type": "text/plain"}, b"boom"), Outcome.ERROR_STATUS),
        (Fetched(503, {**JSON, "cache-control": "max-age=60"}, b"{}"), Outcome.ERROR_STATUS),
        (Fetched(200, {**JSON, "cache-control": "no-store"}, b"{}"), Outcome.NOT_STORABLE),
        (Fetched(200, {**JSON, "set-cookie": "a=1"}, b"{}"), Outcome.NOT_STORABLE),
        (Fetched(404, {**JSON, "cache-control": "max-age=60"}, b"{}"), Outcome.CHANGED_STATUS),
        (Fetched(401, {**JSON, "cache-control": "max-age=60"}, b"{}"), Outcome.CHANGED_STATUS),
        (FetchError("timeout", "no answer within 10 s"), Outcome.TIMEOUT),
        (FetchError("connection", "refused"), Outcome.CONNECTION),
        (FetchError("protocol", "got more than 100 headers"), Outcome.PROTOCOL),
    ],
    ids=[
        "500",
        "503-storable",
        "no-store",
        "set-cookie",
        "404-for-200",
        "401-for-200",
        "timeout",
        "connection",
        "protocol",
    ],
)
def test_failures_release_the_lease_and_store_nothing(
    answer: Fetched | FetchError, outcome: Outcome
) -> None:
    found, why, client, _ = run(answer)
    assert found is outcome and why
    assert client.stores == [] and client.released == [b"v2:route-1:k"]


def test_a_body_over_the_bound_is_not_stored() -> None:
    cfg = config(max_body_bytes=4)
    answer = Fetched(200, {**JSON, "cache-control": "max-age=60"}, b"12345")
    outcome, why, client, fetch = run(answer, cfg=cfg)
    assert outcome is Outcome.NOT_STORABLE and "too-large" in why
    assert fetch.calls[0][3] == 4 and client.stores == []


def test_a_304_for_another_entity_removes_the_entry() -> None:
    outcome, _, client, _ = run(Fetched(304, {"etag": '"other"'}, b""))
    assert outcome is Outcome.NOT_STORABLE
    assert client.invalidated == [b"v2:route-1:k"] and client.released == [b"v2:route-1:k"]


def test_a_store_the_sidecar_refuses_releases_the_lease() -> None:
    client = RecordingClient(fail_stores=True)
    outcome, why, _, _ = run(Fetched(304, {"etag": '"v1"'}, b""), client=client)
    assert outcome is Outcome.SIDECAR and "not stored" in why
    assert client.released == [b"v2:route-1:k"]


@pytest.mark.parametrize("kind", ["timeout", "connection"])
def test_an_unreachable_origin_counts_as_a_failed_request(kind: FailureKind) -> None:
    health = OriginHealth(distinct_keys=1)
    run(FetchError(kind, "down"), origins=health)
    assert health.is_down("route-1")


def test_an_answer_marks_the_origin_up_again() -> None:
    health = OriginHealth(distinct_keys=1)
    health.failed("route-1", "v2:route-1:k")
    run(Fetched(502, {}, b""), origins=health)
    assert health.is_down("route-1")
    run(Fetched(304, {"etag": '"v1"'}, b""), origins=health)
    assert not health.is_down("route-1")


def test_the_refreshed_entry_carries_the_routes_names_as_event_tags() -> None:
    cfg = config(event_tags=True)
    answer = Fetched(200, {**JSON, "cache-control": "max-age=60"}, b"{}")
    _, _, client, _ = run(answer, cfg=cfg, request=lease_holder(), entry=stale_entry())
    tags = wire.entry_from_pb(client.stores[0]["entry"]).tags
    assert any("products" in tag for tag in tags) and any("catalogue" in tag for tag in tags)

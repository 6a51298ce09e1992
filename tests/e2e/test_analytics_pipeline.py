"""Analytics events end to end: HTTP through kongsim, the real plugin server (two workers),
a real sidecar and the real broker (Tansu); every sampled request arrives on the topic once,
with the cache's outcome, the consumer, and never the key, a header value or a body."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import jsonschema
import pytest
import pytest_asyncio
import yaml
from aiohttp import web
from confluent_kafka import Consumer, TopicPartition

from deploy.upstream.app import State, build_app
from kongsim.protocol.spec import PluginServerSpec
from kongsim.testing import KongSim
from tests.integration.servers import service
from tests.support.sidecar import clean_env, stack_config, unix_sidecar
from tools.services.procs import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180), pytest.mark.asyncio(loop_scope="module")]

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "schema" / "strata.access.v1.schema.json").read_text()
)
SECRET = "alice-secret-key"  # kong.yml's key-auth credential: must never reach the topic


def drain(bootstrap: str, topic: str, at_least: int, quiet_s: float = 1.5) -> list[bytes]:
    """The message values of partition 0 of `topic` from its start: at least `at_least`
    (within 30 s), then whatever else arrives until nothing has for `quiet_s`."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"e2e-{uuid.uuid4().hex}"}
        | {"enable.auto.commit": False}
    )
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        values: list[bytes] = []
        deadline = time.monotonic() + 30
        last = time.monotonic()
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                values.append(message.value() or b"")
                last = time.monotonic()
            elif len(values) >= at_least and time.monotonic() - last >= quiet_s:
                break
        return values
    finally:
        consumer.close()


class Pipeline:
    def __init__(self, sim: KongSim, bootstrap: str, topic: str) -> None:
        self.sim, self.bootstrap, self.topic = sim, bootstrap, topic


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pipeline() -> AsyncIterator[Pipeline]:
    bootstrap = service("STRATA_TEST_KAFKA_BOOTSTRAP")
    topic = f"strata.access.e2e-{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory(prefix="strata-analytics-", dir="/tmp") as d:
        tmp = Path(d)
        upstream_port = free_port()
        runner = web.AppRunner(build_app(State(slow_ms=300)), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", upstream_port).start()
        env = {
            **clean_env(),
            "STRATA_KAFKA_BOOTSTRAP": bootstrap,
            "STRATA_KAFKA_TOPIC": f"strata.inv.e2e-{uuid.uuid4().hex[:10]}",
            "STRATA_ANALYTICS_TOPIC": topic,
            "STRATA_ANALYTICS_LINGER_MS": "5",
            "STRATA_NODE_ID": "analytics-e2e",
        }
        sidecar = unix_sidecar(tmp / "sidecar.sock", env)
        await asyncio.to_thread(sidecar.start)
        config = stack_config(f"http://127.0.0.1:{upstream_port}", sidecar.address)
        (tmp / "kong.yml").write_text(yaml.safe_dump(config))
        spec = PluginServerSpec(
            name="strata-cache",
            start_cmd="{python} -m kong_plugin -p {prefix} --socket-name strata-cache.socket "
            "--workers 2",
            query_cmd="{python} -m kong_plugin --dump",
        )
        sim = KongSim(tmp / "kong.yml", plugin_servers=[spec], prefix=str(tmp / "kong"))
        try:
            await sim.__aenter__()
            yield Pipeline(sim, bootstrap, topic)
        finally:
            await sim.__aexit__(None, None, None)
            await asyncio.to_thread(sidecar.stop)
            await runner.cleanup()


async def test_every_sampled_request_arrives_once_with_its_outcome_and_no_secret(
    pipeline: Pipeline,
) -> None:
    tag = uuid.uuid4().hex[:8]
    base = pipeline.sim.base_url
    sent: list[tuple[str, str]] = []  # (path, X-Cache-Status) of each request to /products
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        for i in range(12):  # /products samples every request (kong.yml: sample_rate 1.0)
            path = f"/products/{1 + i % 3}?run={tag}"
            async with http.get(base + path) as resp:
                await resp.read()
                sent.append((path, resp.headers.get("x-cache-status", "")))
        async with http.get(base + f"/products/1?run={tag}", headers={"If-Match": '"x"'}) as r:
            await r.read()
            assert r.headers.get("x-cache-status") == "Bypass"
        # the per-consumer route samples 1 in 10: enough requests that some are sampled
        for i in range(40):
            async with http.get(
                base + f"/me?shared=1&run={tag}-{i}", headers={"apikey": SECRET}
            ) as r:
                await r.read()
                assert r.status == 200
        await pipeline.sim.wait_idle()
    words = [w for _, w in sent]
    assert words.count("Miss") == 3 and words.count("Hit") == 9, words

    events = [json.loads(v) for v in drain(pipeline.bootstrap, pipeline.topic, 13 + 1)]
    checker = jsonschema.FormatChecker()
    for doc in events:
        jsonschema.validate(doc, SCHEMA, format_checker=checker)
        text = json.dumps(doc)
        assert SECRET not in text and tag not in text, doc  # no header value, no URL/key part
        assert doc["node_id"] == "analytics-e2e"
    products = [e for e in events if e["method"] == "GET" and e.get("consumer_id") is None]
    results = sorted(e["cache_result"] for e in products)
    assert results.count("miss") == 3 and results.count("hit") == 9, results
    assert results.count("bypass") == 1, results
    misses = [e for e in products if e["cache_result"] == "miss"]
    assert all(e["status"] == 200 and e["cache_detail"] == "stored" for e in misses), misses
    assert len({e["key_hash"] for e in misses}) == 3  # three URLs, three keys
    hits = [e for e in products if e["cache_result"] == "hit"]
    assert {e["key_hash"] for e in hits} == {e["key_hash"] for e in misses}
    assert all(e["tier"] and e["bytes"] > 0 for e in hits), hits
    # the sampled /me requests name alice's consumer id, and only a fraction was sampled
    mine = [e for e in events if e.get("consumer_id")]
    assert 1 <= len(mine) <= 25, len(mine)
    assert len({e["consumer_id"] for e in mine}) == 1

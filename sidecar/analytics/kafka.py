"""Analytics on Kafka for a configured sidecar: the publisher, and its topic created when
missing (in the background, as the invalidation topic is: a broker down at start is
retried and logged, never a failed start), and again when deliveries fail and it is gone.

Not guaranteed: that the topic exists when `start_analytics` returns, or that an existing
topic has ``analytics_topic_partitions`` partitions (it is left as it is).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sidecar.analytics.producer import KafkaPublisher, PublisherSettings
from sidecar.analytics.service import Analytics
from sidecar.cluster.kafka_bus import ensure_topic_retrying
from sidecar.config import SidecarConfig
from sidecar.core.backoff import Backoff

__all__ = ["ensure_analytics_topic", "publisher_settings", "start_analytics"]

log = logging.getLogger("strata.sidecar.analytics")

#: How long one attempt to create the topic waits for the broker, and between attempts.
TOPIC_TIMEOUT_S = 5.0
TOPIC_RETRY_S = 5.0


def publisher_settings(config: SidecarConfig) -> PublisherSettings:
    return PublisherSettings(
        bootstrap=config.kafka_bootstrap,
        topic=config.analytics_topic,
        queue_max_events=config.analytics_queue_max_events,
        linger_ms=config.analytics_linger_ms,
    )


async def ensure_analytics_topic(
    bootstrap: str,
    topic: str,
    partitions: int,
    failures: Callable[[], int],
    retry_s: float = TOPIC_RETRY_S,
) -> None:
    """Create `topic` when missing, retrying every `retry_s` until the broker answers; then
    check again whenever `failures()` (events the broker did not take) has grown since the
    last check, at most every `retry_s` (a broker that lost its state lost the topic too, and
    auto-creation is off). Runs until cancelled."""
    backoff = Backoff(retry_s)
    seen = failures()
    while True:
        await ensure_topic_retrying(bootstrap, topic, partitions, backoff, log, TOPIC_TIMEOUT_S)
        while True:
            await asyncio.sleep(retry_s)
            now = failures()
            if now > seen:
                seen = now
                break


async def start_analytics(
    config: SidecarConfig, node_id: str
) -> tuple[Analytics, KafkaPublisher, asyncio.Task[None]]:
    """The analytics of `config` (which must name a broker and an analytics topic),
    publishing as `node_id`, and the task keeping its topic; the caller closes the publisher
    (`KafkaPublisher.close`) and cancels the task."""
    settings = publisher_settings(config)
    publisher = await asyncio.to_thread(KafkaPublisher, settings)
    topic = asyncio.create_task(
        ensure_analytics_topic(
            settings.bootstrap,
            settings.topic,
            config.analytics_topic_partitions,
            lambda: publisher.stats().dropped.get("broker-unavailable", 0),
        ),
        name="strata-analytics-topic",
    )
    log.info(
        f"analytics events on Kafka topic {settings.topic} as node {node_id}",
        extra={
            "event.action": "analytics-started",
            "strata.kafka.topic": settings.topic,
            "strata.node_id": node_id,
        },
    )
    analytics = Analytics(
        node_id, publisher, max_events_per_second=config.analytics_max_events_per_second
    )
    return analytics, publisher, topic

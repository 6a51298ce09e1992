"""The invalidation service on Kafka: the bus of a configured sidecar, started and wired.

`bus_config` turns the settings into a `KafkaBusConfig` (node id derived when not set);
`start_bus` starts the bus with `Invalidations.receive` as its apply callback, publishes
submitted events through it, and creates the topic (and the dead-letter topic) when it is
missing, in the background: a broker that is down at start is retried and logged, never a
failed start. Bad settings are (`ConfigError`, before anything connects).

Not guaranteed: that the topic has `kafka_topic_partitions` partitions when it already
existed (it is left as it is), or that it exists by the time `start_bus` returns.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from sidecar.cluster.kafka_bus import (
    KafkaBus,
    KafkaBusConfig,
    default_node_id,
    ensure_topic_retrying,
)
from sidecar.config import SidecarConfig
from sidecar.core.backoff import Backoff
from sidecar.core.errors import ConfigError
from sidecar.invalidation.service import Invalidations

__all__ = ["bus_config", "node_id", "start_bus"]

log = logging.getLogger("strata.sidecar.invalidation")

#: How long one attempt to create a topic waits for the broker.
TOPIC_TIMEOUT_S = 5.0


def node_id(config: SidecarConfig, hostname: str | None = None) -> str:
    """`config.node_id`, or one derived from the host name and `config.listen`."""
    return config.node_id or default_node_id(hostname or socket.gethostname(), config.listen)


def bus_config(config: SidecarConfig, hostname: str | None = None) -> KafkaBusConfig:
    """The bus settings of `config` (which must name a bootstrap); `ConfigError` when they
    do not make one."""
    try:
        return KafkaBusConfig(
            bootstrap=config.kafka_bootstrap,
            node_id=node_id(config, hostname),
            topic=config.kafka_topic,
            fetch_wait_max_ms=config.kafka_fetch_wait_ms,
            outbox_max_events=config.kafka_outbox_max_events,
            dead_letter_topic=config.kafka_dead_letter_topic,
            topic_partitions=config.kafka_topic_partitions,
        )
    except ValueError as exc:
        raise ConfigError("kafka", str(exc)) from exc


async def ensure_topics(bus: KafkaBusConfig, partitions: int, retry_interval_s: float) -> None:
    """Create the invalidation topic (`partitions` partitions) and the dead-letter topic
    (one) when missing, retrying every `retry_interval_s` (and up) until the broker answers;
    each failure is logged (rate-limited by the backoff)."""
    wanted = [(bus.topic, partitions)]
    if bus.dead_letter_topic:
        wanted.append((bus.dead_letter_topic, 1))
    backoff = Backoff(retry_interval_s)
    for topic, count in wanted:
        await ensure_topic_retrying(bus.bootstrap, topic, count, backoff, log, TOPIC_TIMEOUT_S)


async def start_bus(
    config: SidecarConfig, invalidations: Invalidations
) -> tuple[KafkaBus, asyncio.Task[None]]:
    """Start the bus of `config` for `invalidations` (returns at once, whatever the broker
    does) and the background task that creates missing topics; the caller closes the bus
    (`KafkaBus.close`, which flushes the outbox within its bound) and cancels the task."""
    settings = bus_config(config)
    if settings.node_id != invalidations.node_id:
        raise ValueError("the bus and the invalidation service name different nodes")
    topics = asyncio.create_task(
        ensure_topics(settings, config.kafka_topic_partitions, settings.retry_interval_s),
        name="strata-kafka-topics",
    )
    bus = KafkaBus(settings, invalidations.receive)
    try:
        await bus.start()
    except BaseException:
        topics.cancel()
        raise
    invalidations.publish_through(bus)
    log.info(
        f"invalidation events on Kafka topic {settings.topic} as node {settings.node_id}",
        extra={
            "event.action": "kafka-bus-started",
            "strata.kafka.topic": settings.topic,
            "strata.node_id": settings.node_id,
        },
    )
    return bus, topics

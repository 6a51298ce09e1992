"""From a configuration to the objects that serve it: limits, tiers (each shared one behind
its circuit breaker), fill leases, tag generations, placement, byte budgets, the engine and
the invalidation service. Nothing here connects except `open_tiers`; running them is
`sidecar.serve`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from sidecar.config import SidecarConfig
from sidecar.core.clock import Clock
from sidecar.core.errors import TierError
from sidecar.core.limits import Limits
from sidecar.core.observer import Observer
from sidecar.engine.budgets import NO_BUDGETS, Budgets
from sidecar.engine.coalesce import Leases
from sidecar.engine.engine import FREQUENCY_CAPACITY, Engine
from sidecar.engine.generations import Generations, LocalGenerations
from sidecar.engine.placement import PlacementPolicy, SharedBand
from sidecar.invalidation import Invalidations
from sidecar.policy.shared import shared_policy_factory
from sidecar.policy.sketch import FrequencySketch
from sidecar.rpc.bounds import RpcLimits
from sidecar.tiers.base import Tier
from sidecar.tiers.breaker import CircuitBreakerTier
from sidecar.tiers.memory import SKETCH_ENTRIES_PER_MIB, MemoryTier

if TYPE_CHECKING:
    from sidecar.cluster.leases import RedisLeases

log = logging.getLogger("strata.sidecar")

#: The node id of a sidecar without Kafka and without `node_id` (its events go nowhere).
LOCAL_NODE_ID = "local"

#: Transport headroom over the largest body, so oversized bodies reach validation.
MESSAGE_HEADROOM_BYTES = 1024 * 1024


def limits_from(config: SidecarConfig) -> Limits:
    return Limits(
        max_key_bytes=config.max_key_bytes,
        max_body_bytes=config.max_body_bytes,
        max_headers=config.max_headers,
        max_header_bytes=config.max_header_bytes,
        max_ttl_ms=config.max_ttl_seconds * 1000,
        max_coalesce_wait_ms=config.coalesce_max_wait_ms,
    )


def rpc_limits_from(config: SidecarConfig) -> RpcLimits:
    """The gRPC surface's bounds (`sidecar.rpc.bounds`), message limit included."""
    return RpcLimits(
        max_batch_calls=config.max_batch_calls,
        max_streams=config.max_streams,
        max_watch_streams=config.max_watch_streams,
        max_unary_in_flight=config.max_unary_in_flight,
        max_coalesce_waiters=config.max_coalesce_waiters,
        max_pending_reply_bytes=config.max_pending_reply_bytes,
        max_request_bytes_in_flight=config.max_request_bytes_in_flight,
        max_headers=config.max_headers,
        max_tags=limits_from(config).max_tags,
        max_message_bytes=max_message_bytes(config),
    )


def build_tiers(
    config: SidecarConfig,
    clock: Clock,
    observer: Observer,
    frequencies: FrequencySketch | None = None,
) -> list[Tier]:
    """The tiers `config` asks for, fastest first: memory, then Redis, Memcached and
    PostgreSQL for each one that is configured, every shared one behind a circuit breaker.
    Nothing connects here. (Memcached cannot enumerate keys: tag and route purges reach it
    through tag generations; an arbitrary prefix purge does not.)"""
    memory = (
        MemoryTier(config.memory_max_bytes, clock, config.admission, observer)
        if frequencies is None  # its admission counts its own reads
        else MemoryTier(  # admission reads the engine's counts (`sidecar.policy.shared`)
            config.memory_max_bytes,
            clock,
            config.admission,
            observer,
            policy_factory=shared_policy_factory(frequencies),
        )
    )
    tiers: list[Tier] = [memory]

    def guarded(tier: Tier) -> Tier:
        """A shared tier behind a circuit breaker: skipped fast while it keeps failing."""
        return CircuitBreakerTier(
            tier,
            clock,
            failure_threshold=config.tier_failure_threshold,
            open_for_s=config.tier_open_seconds,
            observer=observer,
        )

    if config.redis_url:
        from sidecar.tiers.redis import RedisTier  # noqa: PLC0415

        tiers.append(
            guarded(
                RedisTier(
                    config.redis_url,
                    clock,
                    namespace=config.namespace,
                    timeout_s=config.redis_timeout_ms / 1000,
                    observer=observer,
                )
            )
        )
    if config.memcached_servers:
        from sidecar.tiers.memcached import MemcachedTier, parse_servers  # noqa: PLC0415

        tiers.append(
            guarded(
                MemcachedTier(
                    parse_servers(config.memcached_servers),
                    clock,
                    namespace=config.namespace,
                    timeout_s=config.memcached_timeout_ms / 1000,
                    observer=observer,
                )
            )
        )
    if config.postgres_dsn:
        from sidecar.tiers.postgres import PostgresTier  # noqa: PLC0415

        tiers.append(
            guarded(
                PostgresTier(
                    config.postgres_dsn,
                    clock,
                    namespace=config.namespace,
                    timeout_s=config.postgres_timeout_ms / 1000,
                    observer=observer,
                )
            )
        )
    return tiers


def build_leases(config: SidecarConfig, clock: Clock, observer: Observer) -> RedisLeases | None:
    """Cluster-wide fill leases in Redis when Redis is configured; else None (node-local)."""
    if not config.redis_url:
        return None
    from sidecar.cluster.leases import RedisLeases  # noqa: PLC0415

    return RedisLeases(
        config.redis_url,
        clock,
        namespace=config.namespace,
        ttl_ms=config.lease_ttl_ms,
        timeout_s=config.redis_timeout_ms / 1000,
        observer=observer,
    )


def build_generations(config: SidecarConfig, clock: Clock, observer: Observer) -> Generations:
    """Tag generation counters shared through Redis when Redis is configured; else local
    (purges then reach this sidecar only)."""
    if not config.redis_url:
        return LocalGenerations(
            clock,
            max_records=config.generations_max_records,
            max_lifetime_ms=config.max_ttl_seconds * 1000,
        )
    from sidecar.cluster.generations import RedisGenerations  # noqa: PLC0415

    return RedisGenerations(
        config.redis_url,
        clock,
        namespace=config.namespace,
        timeout_s=config.redis_timeout_ms / 1000,
        cache_ms=config.generations_cache_ms,
        observer=observer,
        max_records=config.generations_max_records,
    )


def placement_from(config: SidecarConfig) -> PlacementPolicy:
    return PlacementPolicy(
        shared_min_hits=config.shared_min_hits,
        bands=(
            SharedBand("redis", config.redis_max_entry_bytes),
            SharedBand("memcached", config.memcached_max_entry_bytes),
        ),
        durable=config.durable_tier,
    )


def budgets_from(config: SidecarConfig, tiers: list[Tier], clock: Clock) -> Budgets | None:
    """The shared tiers' occupancy and byte budgets per `*_max_bytes` (None without a
    shared tier): each one's usage is read through its `usage()` (behind its circuit
    breaker), budget or not, so ``strata_tier_bytes`` reports it."""
    max_bytes = {
        "redis": config.redis_max_bytes,
        "memcached": config.memcached_max_bytes,
        "postgres": config.postgres_max_bytes,
    }
    usage = {t.name: t.usage for t in tiers if t.name in max_bytes}
    limits = {t.name: _limit_reader(t) for t in tiers if t.name in max_bytes}
    budgets = Budgets(max_bytes, usage, clock, limits, config.shared_room_fraction)
    return budgets if budgets else None


def _limit_reader(tier: Tier) -> Callable[[], int | None]:
    """The tier's server limit as its last usage read saw it (no I/O; None: none known)."""

    def read() -> int | None:
        limit = getattr(tier, "server_limit_bytes", None)
        return limit if isinstance(limit, int) else None

    return read


def build_engine(
    config: SidecarConfig,
    clock: Clock,
    observer: Observer,
    leases: Leases | None = None,
    generations: Generations | None = None,
) -> Engine:
    """The engine over the tiers of `config` (the memory tier alone by default), placing
    entries per `placement_from(config)` within the byte budgets of `budgets_from`."""
    memory_keys = config.memory_max_bytes // 1024**2 * SKETCH_ENTRIES_PER_MIB
    frequencies = FrequencySketch(max(FREQUENCY_CAPACITY, memory_keys))  # one per sidecar
    tiers = build_tiers(config, clock, observer, frequencies)
    return Engine(
        tiers,
        clock,
        limits_from(config),
        config.lease_ttl_ms,
        observer,
        leases=leases,
        generations=generations,
        placement=placement_from(config),
        frequencies=frequencies,
        budgets=budgets_from(config, tiers, clock) or NO_BUDGETS,
        lookup_budget_ms=config.lookup_budget_ms,
    )


def build_invalidations(
    config: SidecarConfig, engine: Engine, clock: Clock, observer: Observer
) -> Invalidations:
    """The invalidation service of `engine` (publishing nowhere until a bus is attached,
    `sidecar.invalidation.kafka.start_bus`). Its node id: `node_id`, else derived from the
    host name and `listen` when Kafka is configured, else `LOCAL_NODE_ID`."""
    name = config.node_id or LOCAL_NODE_ID
    if config.kafka_bootstrap:
        from sidecar.invalidation.kafka import node_id  # noqa: PLC0415  (loads the Kafka client)

        name = node_id(config)
    return Invalidations(engine, name, clock, observer)


async def open_tiers(engine: Engine) -> None:
    """Connect every tier; one that cannot be reached is logged and skipped until it
    answers (the engine treats its errors as misses), so start-up never waits on it."""
    for tier in engine.tiers:
        try:
            await tier.open()
        except TierError as exc:
            log.warning(
                "tier unreachable at start-up; serving without it until it answers",
                extra={
                    "event.action": "tier_open",
                    "strata.tier": tier.name,
                    "error.message": str(exc),
                },
            )


def max_message_bytes(config: SidecarConfig) -> int:
    return 2 * (config.max_body_bytes + config.max_header_bytes) + MESSAGE_HEADROOM_BYTES

"""Wires a configuration into a running sidecar and runs it until told to stop.

Start-up order: socket path checked -> metrics endpoint -> engine -> gRPC server (bound
beside the socket path, started, health SERVING) -> socket published at its path (taking
it over from a running sidecar, which then drains) -> sweeper. Shutdown (SIGTERM/SIGINT,
`stop`, or the path taken over): metrics closed, health NOT_SERVING, no new calls, Exchange
streams ended, in-flight calls get at most `shutdown_grace_seconds`, then everything is
closed and the socket path removed if it is still this sidecar's (`sidecar.lifecycle`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from sidecar import __version__, lifecycle
from sidecar.config import SidecarConfig
from sidecar.core.clock import Clock, SystemClock
from sidecar.core.errors import TierError
from sidecar.core.limits import Limits
from sidecar.core.observer import Observer
from sidecar.engine.budgets import Budgets
from sidecar.engine.coalesce import Leases
from sidecar.engine.engine import Engine
from sidecar.engine.generations import Generations, LocalGenerations
from sidecar.engine.placement import PlacementPolicy
from sidecar.observability.metrics import PrometheusObserver, TierCollector
from sidecar.rpc.bounds import RpcLimits
from sidecar.rpc.server import create_server, start_serving
from sidecar.rpc.unix_socket import PathKind
from sidecar.tiers.base import Tier
from sidecar.tiers.breaker import CircuitBreakerTier
from sidecar.tiers.memory import MemoryTier

if TYPE_CHECKING:
    from sidecar.cluster.leases import RedisLeases

log = logging.getLogger("strata.sidecar")

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
        max_unary_in_flight=config.max_unary_in_flight,
        max_coalesce_waiters=config.max_coalesce_waiters,
        max_pending_reply_bytes=config.max_pending_reply_bytes,
        max_request_bytes_in_flight=config.max_request_bytes_in_flight,
        max_headers=config.max_headers,
        max_tags=limits_from(config).max_tags,
        max_message_bytes=max_message_bytes(config),
    )


def build_tiers(config: SidecarConfig, clock: Clock, observer: Observer) -> list[Tier]:
    """The tiers `config` asks for, fastest first: memory, then Redis, Memcached and
    PostgreSQL for each one that is configured, every shared one behind a circuit breaker.
    Nothing connects here. (Memcached cannot enumerate keys: tag and route purges reach it
    through tag generations; an arbitrary prefix purge does not.)"""
    tiers: list[Tier] = [MemoryTier(config.memory_max_bytes, clock, config.admission, observer)]

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
        redis_max_entry_bytes=config.redis_max_entry_bytes,
        memcached_max_entry_bytes=config.memcached_max_entry_bytes,
        durable=config.durable_tier,
    )


def budgets_from(config: SidecarConfig, tiers: list[Tier], clock: Clock) -> Budgets | None:
    """Byte budgets of the shared tiers per `*_max_bytes` (None when every one is 0): each
    budgeted tier's usage is read through its `usage()` (behind its circuit breaker)."""
    max_bytes = {
        "redis": config.redis_max_bytes,
        "memcached": config.memcached_max_bytes,
        "postgres": config.postgres_max_bytes,
    }
    usage = {
        t.name: read
        for t in tiers
        if max_bytes.get(t.name, 0) > 0 and (read := getattr(t, "usage", None)) is not None
    }
    budgets = Budgets(max_bytes, usage, clock)
    return budgets if budgets else None


def build_engine(
    config: SidecarConfig,
    clock: Clock,
    observer: Observer,
    leases: Leases | None = None,
    generations: Generations | None = None,
) -> Engine:
    """The engine over the tiers of `config` (the memory tier alone by default), placing
    entries per `placement_from(config)` within the byte budgets of `budgets_from`."""
    tiers = build_tiers(config, clock, observer)
    return Engine(
        tiers,
        clock,
        limits_from(config),
        config.lease_ttl_ms,
        observer,
        leases=leases,
        generations=generations,
        placement=placement_from(config),
        budgets=budgets_from(config, tiers, clock),
        lookup_budget_ms=config.lookup_budget_ms,
    )


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


async def _sweep_forever(engine: Engine, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await engine.sweep()
        except Exception:
            log.exception("sweep failed")


async def _sample_budgets_forever(budgets: Budgets, interval: float) -> None:
    """Sample the budgeted tiers' usage now and every `interval` seconds (a failing tier
    keeps its previous sample; `Budgets` logs that at most once a minute)."""
    while True:
        try:
            await budgets.sample()
        except Exception:
            log.exception("budget sample failed")
        await asyncio.sleep(interval)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _open_or_warn(opening: Awaitable[None], action: str, message: str) -> None:
    """Open a Redis-backed helper; unreachable is a warning, not a failed start (it
    retries on later calls)."""
    try:
        await opening
    except TierError as exc:
        log.warning(message, extra={"event.action": action, "error.message": str(exc)})


#: The key a starting sidecar looks up once in every tier before it takes calls.
WARM_UP_KEY = b"v1:strata-warm-up:0"


async def _warm_up(engine: Engine) -> None:
    """One read of every tier before the socket is published (or taken over from a running
    sidecar): connection pools, worker threads and first-call code paths are then ready, so
    the first real calls do not miss the plugin's deadline. Not counted as a lookup; never
    fails the start (a failing tier is the breaker's business, as for any call)."""
    for tier in engine.tiers:
        try:
            await tier.get(WARM_UP_KEY)
        except Exception:
            log.debug("warm-up read of tier %s failed", tier.name, exc_info=True)


def _stop_handling(
    loop: asyncio.AbstractEventLoop, sig: signal.Signals, ignore_after: bool
) -> None:
    loop.remove_signal_handler(sig)
    if ignore_after:
        signal.signal(sig, signal.SIG_IGN)  # already stopping: a second signal is moot


async def serve(
    config: SidecarConfig,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[str], None] | None = None,
    clock: Clock | None = None,
    ignore_signals_after: bool = False,
) -> None:
    """Run the sidecar until `stop` is set, SIGTERM/SIGINT arrives or another sidecar takes
    its socket path over; then drain (see `sidecar.lifecycle`) and close everything.
    `ignore_signals_after` (the process entry point): SIGTERM/SIGINT are ignored once this
    returns, so one arriving while the process exits cannot kill it half-way.

    A start-up failure (a non-socket at the socket path, a metrics port in use, ...)
    raises OSError after closing whatever had started; nothing that was at the socket
    path is touched then."""
    stop = stop or asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        # Handled from the start to the very end: a signal during start-up stops the
        # sidecar once started, one during the drain is not a second, abrupt stop.
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
                stack.callback(_stop_handling, loop, sig, ignore_signals_after)
        # Cheap checks first, so a bad path or a taken port fails before any tier connects.
        before = lifecycle.check_listen_path(config.listen, config.socket_takeover)
        registry = CollectorRegistry()
        metrics = lifecycle.Metrics(
            config.metrics_listen,
            registry,
            wait_for_port=before is not None and before.kind is PathKind.LIVE,
        )
        started = False

        def log_stopped() -> None:  # the very last step, after a start that completed
            if started:
                log.info("sidecar stopped", extra={"event.action": "stopped"})

        stack.callback(log_stopped)
        stack.callback(metrics.close)
        observer = PrometheusObserver(registry)
        clock = clock or SystemClock()
        leases = build_leases(config, clock, observer)
        if leases is not None:
            stack.push_async_callback(leases.close)
            await _open_or_warn(
                leases.open(),
                "leases_open",
                "Redis unreachable for fill leases; coalescing per node until it answers",
            )
        generations = build_generations(config, clock, observer)
        stack.push_async_callback(_close_quietly, generations)
        await _open_or_warn(
            generations.open(),
            "generations_open",
            "Redis unreachable for tag generations; purges are node-local until it answers",
        )
        engine = build_engine(config, clock, observer, leases, generations)
        stack.push_async_callback(engine.close)
        await open_tiers(engine)
        registry.register(TierCollector(engine.snapshot))
        running = create_server(
            engine,
            config.listen,
            max_message_bytes(config),
            socket_takeover=config.socket_takeover,
            limits=rpc_limits_from(config),
        )
        if running.socket is not None:
            stack.callback(running.socket.release)  # only if the path is still ours
        stack.push_async_callback(lifecycle.drain, running, config.shutdown_grace_seconds)
        stack.callback(metrics.close)  # first thing when draining: scrapes go to the new one
        await _warm_up(engine)
        lifecycle.log_published(running, await start_serving(running))
        tasks = [asyncio.create_task(_sweep_forever(engine, config.sweep_interval_seconds))]
        if engine.budgets is not None:
            tasks.append(
                asyncio.create_task(
                    _sample_budgets_forever(engine.budgets, config.budget_sample_seconds)
                )
            )
        if running.socket is not None:
            tasks.append(asyncio.create_task(lifecycle.watch_ownership(running.socket, stop)))
        for task in tasks:
            stack.push_async_callback(_cancel, task)
        log.info(
            "sidecar started",
            extra={
                "event.action": "start",
                "service.version": __version__,
                "strata.listen": running.address,
                "strata.metrics_listen": config.metrics_listen or "off",
                "strata.tiers": [t.name for t in engine.snapshot()],
                "strata.config": config.redacted(),
            },
        )
        started = True
        if on_ready is not None:
            on_ready(running.address)
        await stop.wait()
        log.info("sidecar stopping", extra={"event.action": "stop"})


async def _close_quietly(generations: Generations) -> None:
    with contextlib.suppress(TierError):
        await generations.close()

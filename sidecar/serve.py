"""Runs a configured sidecar until told to stop.

Start-up order: socket path checked -> metrics endpoint -> engine (`sidecar.app`) ->
invalidation service, and its Kafka bus when configured (`sidecar.invalidation.kafka`: never
waits on the broker) -> gRPC server (bound beside the socket path, started, health
SERVING) -> socket published at its path (taking it over from a running sidecar, which then
drains) -> sweeper. Shutdown (SIGTERM/SIGINT, `stop`, or the path taken over): metrics
closed, health NOT_SERVING, no new calls, Exchange streams ended, in-flight calls get at
most `shutdown_grace_seconds`, then the Kafka bus is closed (its outbox flushed for at
most `shutdown_grace_seconds`, at least `BUS_DRAIN_MIN_S`; what is left is dropped and
logged), then everything else is closed and the socket path removed if it is still this
sidecar's (`sidecar.lifecycle`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry

from sidecar import __version__, lifecycle
from sidecar.admin import start_admin
from sidecar.analytics.metrics import AnalyticsCollector
from sidecar.analytics.service import Analytics
from sidecar.app import (
    build_engine,
    build_generations,
    build_invalidations,
    build_leases,
    max_message_bytes,
    open_tiers,
    rpc_limits_from,
)
from sidecar.config import SidecarConfig
from sidecar.core.clock import Clock, SystemClock
from sidecar.core.errors import TierError
from sidecar.engine.budgets import ByteBudgets
from sidecar.engine.engine import Engine
from sidecar.engine.generations import Generations
from sidecar.observability.event_metrics import BusCollector
from sidecar.observability.metrics import PrometheusObserver, TierCollector
from sidecar.rpc.server import create_server, start_serving
from sidecar.rpc.unix_socket import PathKind

log = logging.getLogger("strata.sidecar")


async def _sweep_forever(engine: Engine, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await engine.sweep()
        except Exception:
            log.exception("sweep failed")


async def _sample_budgets_forever(budgets: ByteBudgets, interval: float) -> None:
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


#: The shortest time the Kafka bus gets to flush its outbox when stopping.
BUS_DRAIN_MIN_S = 1.0

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
        invalidations = build_invalidations(config, engine, clock, observer)
        if config.kafka_bootstrap:
            from sidecar.invalidation.kafka import start_bus  # noqa: PLC0415

            bus, topics = await start_bus(config, invalidations)
            # Closed after the gRPC drain (purges in flight are published), before the engine.
            stack.push_async_callback(
                bus.close, max(config.shutdown_grace_seconds, BUS_DRAIN_MIN_S)
            )
            stack.push_async_callback(_cancel, topics)
            registry.register(BusCollector(bus.stats))
        analytics = await _start_analytics(config, invalidations.node_id, stack)
        registry.register(AnalyticsCollector(analytics.stats))
        admin = await start_admin(
            config,
            invalidations,
            engine,
            observer,
            clock,
            wait_for_port=before is not None and before.kind is PathKind.LIVE,
        )
        if admin is not None:
            stack.push_async_callback(admin.close)
        running = create_server(
            engine,
            config.listen,
            max_message_bytes(config),
            socket_takeover=config.socket_takeover,
            limits=rpc_limits_from(config),
            invalidations=invalidations,
            analytics=analytics,
        )
        if running.socket is not None:
            stack.callback(running.socket.release)  # only if the path is still ours
        stack.push_async_callback(lifecycle.drain, running, config.shutdown_grace_seconds)
        stack.callback(metrics.close)  # first thing when draining: scrapes go to the new one
        if admin is not None:  # as first: no purge is taken while draining
            stack.push_async_callback(admin.close)
        await _warm_up(engine)
        lifecycle.log_published(running, await start_serving(running))
        tasks = [asyncio.create_task(_sweep_forever(engine, config.sweep_interval_seconds))]
        if engine.budgets:
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


async def _start_analytics(
    config: SidecarConfig, node_id: str, stack: contextlib.AsyncExitStack
) -> Analytics:
    """The analytics of `config`: publishing on its topic when it names a broker and a
    topic (closed after the gRPC drain, so batches in flight are queued, with the same
    flush bound as the bus), else off."""
    if not (config.kafka_bootstrap and config.analytics_topic):
        return Analytics(node_id)
    from sidecar.analytics.kafka import start_analytics  # noqa: PLC0415  (loads the Kafka client)

    analytics, publisher, topic = await start_analytics(config, node_id)
    drain_s = max(config.shutdown_grace_seconds, BUS_DRAIN_MIN_S)
    stack.push_async_callback(asyncio.to_thread, publisher.close, drain_s)
    stack.push_async_callback(_cancel, topic)
    return analytics


async def _close_quietly(generations: Generations) -> None:
    with contextlib.suppress(TierError):
        await generations.close()

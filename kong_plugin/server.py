"""The kong-pdk plugin server, with instance ids that never repeat across restarts.

kong-pdk numbers plugin instances 0, 1, 2, ... in every new process, while Kong keeps the
ids it was given in each worker's ``running_instances`` table and learns of a restart only
when the server answers ``no plugin instance #N``
(``kong/runloop/plugin_servers/plugin.lua`` ``get_instance_id``,
``kong/runloop/plugin_servers/rpc/mp_rpc.lua`` ``handle_event``). After a restart, a stale id
held for route A can therefore name the instance a new process just started for route B, and
a request on A would run under B's configuration (its cache key prefix, TTLs, scoping).

`RestartSafePluginServer` starts its counter at a random offset instead of 0, so the ids of
one process are, with overwhelming probability, unknown to the next: a stale id gets ``no
plugin instance`` and Kong starts a fresh instance with the right configuration (Kong retries
that error at once, the request is not lost). Ids stay below 2**40 so that Lua numbers
(doubles) and lua-MessagePack carry them exactly.

`install` also subscribes the process's metrics and analytics to the outcomes, as a
strata-engine worker does at start-up, and `serve_metrics` serves ``/metrics`` for this one
process from a thread of its own (`kong_plugin.pluginserver.metrics_http`): the same
families, without PDK and phase timings (kong-pdk's events do not run through
`kong_plugin.pluginserver.events`) and without relays or notices (one process).

Not guaranteed: uniqueness is probabilistic (two processes collide on an id with probability
about ``n / 2**39`` for ``n`` instances); nothing here detects a configuration that Kong
changed without restarting the instance (Kong does that itself with ``__seq__``).
"""

from __future__ import annotations

from typing import Any

from kong_pdk.server import PluginServer

from kong_plugin.pluginserver.instances import random_instance_id
from kong_plugin.pluginserver.metrics_http import MetricsEndpoint
from kong_plugin.pluginserver.metrics_node import LocalMetrics


def first_instance_id() -> int:
    """A random starting id (`kong_plugin.pluginserver.instances.random_instance_id`): never
    a small number, so a restarted kong-pdk server without this class cannot hit it either;
    ids ``offset, offset + 1, ...`` stay far below 2**53."""
    return random_instance_id()


class RestartSafePluginServer(PluginServer):  # type: ignore[misc]
    """kong-pdk's `PluginServer` whose instance ids start at `first_instance_id`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.instance_id = first_instance_id()


def install() -> None:
    """Make kong-pdk's dedicated-server entry point build a `RestartSafePluginServer`, and
    install the outcome subscribers."""
    from kong_pdk import cli  # noqa: PLC0415  (kong_pdk warns on import; load it late)

    from kong_plugin.pluginserver.cli import install_subscribers  # noqa: PLC0415

    cli.PluginServer = RestartSafePluginServer
    install_subscribers()


def serve_metrics(host: str, port: int) -> MetricsEndpoint:
    """``/metrics`` of this process on (`host`, `port`), from a daemon thread."""
    from kong_plugin import plugin_metrics  # noqa: PLC0415

    return MetricsEndpoint(host, port, LocalMetrics(plugin_metrics.snapshot).collect).start()

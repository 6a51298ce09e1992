"""One loaded configuration: the entities, their router, the plugins that apply, the PDK's view.

A request keeps the :class:`Runtime` it started with, so a reload never changes a request in
flight. :func:`load_runtime` reads kong.yml and validates every plugin config against the
plugins' schemas; it raises :class:`~kongsim.errors.ConfigError` (listing every problem) and
builds nothing when the file is invalid.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from kongsim.config.declarative import load_file
from kongsim.config.entities import DeclarativeConfig
from kongsim.config.plugins import PluginInfo, PluginSet, build_plugin_set
from kongsim.pdk import PdkEnv
from kongsim.request.router import Router


@dataclass(frozen=True)
class Runtime:
    """One loaded configuration; requests keep the one they started with."""

    decl: DeclarativeConfig
    router: Router
    plugins: PluginSet
    env: PdkEnv


def load_runtime(
    path: str,
    catalog: Mapping[str, PluginInfo],
    seq: Iterator[int],
    *,
    node_id: str,
    client_body_buffer_size: int,
) -> Runtime:
    """Read ``path`` and build its runtime; ``seq`` numbers the plugins (Kong's ``__seq__``)."""
    decl = load_file(path)
    plugins = build_plugin_set(decl, catalog, seq)
    env = PdkEnv(decl=decl, node_id=node_id, client_body_buffer_size=client_body_buffer_size)
    return Runtime(decl=decl, router=Router(decl), plugins=plugins, env=env)

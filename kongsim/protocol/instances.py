"""Kong's per-worker table of running plugin-server instances (``get_instance_id``).

Kong 3.9 (``kong/runloop/plugin_servers/plugin.lua``): the table is keyed by plugin entity id; a
cached instance is reused only if its ``__seq__`` and ``__plugin_id`` match the current config.
Otherwise the slot is claimed (concurrent requests wait for it, polling every 0.1 s for up to
10 s), ``StartInstance`` is called, the new id stored, and only then the previous instance is
closed with ``CloseInstance`` (errors ignored). A failed start frees the claim and is a hard error
(500). When the server answers "no plugin instance", every instance of that plugin is forgotten
(Kong also tells the other workers) and the event is retried.

The table is never told that the server restarted: like Kong, kongsim finds out through the
"no plugin instance" error of the next event (instance ids restart at 0 in a new server process,
so a stale id may even hit another config's new instance, as in Kong).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from kongsim.config.plugins import ConfiguredPlugin
from kongsim.errors import KongsimError, LuaError

CLAIM_WAIT = 10.0

RpcCall = Callable[..., Awaitable[Any]]


@dataclass
class _Slot:
    plugin: ConfiguredPlugin
    instance_id: int | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)


class InstanceTable:
    """One nginx worker's ``running_instances``."""

    def __init__(self) -> None:
        self._slots: dict[str, _Slot] = {}
        self.starts = 0
        self.closes = 0

    def cached(self, plugin: ConfiguredPlugin) -> int | None:
        """The instance id :meth:`get_instance_id` would return at once, without an RPC or a
        wait (None when it would have to start an instance or wait for a start)."""
        slot = self._slots.get(plugin.id)
        if (
            slot is not None
            and slot.instance_id is not None
            and slot.plugin.seq == plugin.seq
            and slot.plugin.id == plugin.id
        ):
            return slot.instance_id
        return None

    async def get_instance_id(self, plugin: ConfiguredPlugin, call: RpcCall) -> int:
        """Return the instance id to use for ``plugin``, starting an instance if needed.

        ``call(method, *params)`` sends one RPC. Raises :class:`LuaError` when the instance
        cannot be started (Kong's ``error(err)``).
        """
        key = plugin.id
        slot = self._slots.get(key)
        if slot is not None and slot.instance_id is None:
            try:
                await asyncio.wait_for(slot.ready.wait(), CLAIM_WAIT)
            except TimeoutError as exc:
                self._slots.pop(key, None)
                raise LuaError(
                    f"Could not claim instance_id for {plugin.name} (key: {key})"
                ) from exc
            slot = self._slots.get(key)
        if (
            slot is not None
            and slot.instance_id is not None
            and slot.plugin.seq == plugin.seq
            and slot.plugin.id == key
        ):
            return slot.instance_id

        old_id = slot.instance_id if slot is not None else None
        claim = _Slot(plugin)
        self._slots[key] = claim
        try:
            result = await call(
                "plugin.StartInstance", {"Name": plugin.name, "Config": plugin.config_json()}
            )
            instance_id = result["Id"] if isinstance(result, dict) else None
            if not isinstance(instance_id, int):
                raise LuaError(f"starting instance: unexpected answer {result!r:.200}")
        except KongsimError as exc:
            if self._slots.get(key) is claim:
                del self._slots[key]
            claim.ready.set()
            raise LuaError(f"starting instance: {exc}") from exc
        claim.instance_id = instance_id
        claim.ready.set()
        self.starts += 1
        if old_id is not None:
            self.closes += 1
            # "don't care if there's an error, maybe other thread closed it first"
            with contextlib.suppress(KongsimError):
                await call("plugin.CloseInstance", old_id)
        return instance_id

    def reset_plugin(self, plugin_name: str) -> None:
        """Forget every instance of ``plugin_name`` (Kong's ``reset_instances_for_plugin``)."""
        for key in [k for k, s in self._slots.items() if s.plugin.name == plugin_name]:
            slot = self._slots.pop(key)
            slot.ready.set()

    def instance_ids(self) -> dict[str, int | None]:
        """Plugin entity id → instance id currently cached."""
        return {k: s.instance_id for k, s in self._slots.items()}

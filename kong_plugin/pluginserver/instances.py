"""Plugin instances, shared by every worker process of one plugin server.

Kong starts an instance (``plugin.StartInstance``) on whichever worker its connection
reaches and later sends that id's events to any worker. So an instance is recorded in a
registry folder (one JSON file per id: name, config, start time), written before
``StartInstance`` answers; a worker that gets an id it has not seen loads it from there.
``CloseInstance`` removes the file; other workers drop their copy when they next sweep.

Ids are random in ``[2**20, 2**20 + 2**39)`` (`random_instance_id`, also the kong-pdk
engine's first id, `kong_plugin.server`), drawn per instance, so a restarted server never
reuses an id Kong still holds and workers need no shared counter; they stay exact in Lua
numbers.

Not guaranteed: uniqueness is probabilistic (two ids collide with probability ~n²/2**40
for n instances; a collision is detected and redrawn within one registry); an instance a
worker already loaded is used until its sweep after another worker closed it.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kong_pdk.module import Module

log = logging.getLogger("strata.pluginserver")

ID_BASE = 2**20
ID_SPACE = 2**39


def random_instance_id() -> int:
    """A random id in ``[ID_BASE, ID_BASE + ID_SPACE)``: never a small number (what a
    kong-pdk server numbers from 0 would hand out), exact in a Lua number."""
    return ID_BASE + secrets.randbelow(ID_SPACE)


class NoInstance(Exception):  # noqa: N818
    """Kong's ``no plugin instance #N``: Kong then starts a fresh instance and retries."""

    def __init__(self, iid: object) -> None:
        super().__init__(f"no plugin instance #{iid}")


class UnknownPlugin(Exception):  # noqa: N818
    """``StartInstance`` for a plugin this server does not serve (kong-pdk's text)."""

    def __init__(self, name: object) -> None:
        super().__init__(f"{name} not initizlied")


@dataclass(slots=True)
class Instance:
    """One started instance: the plugin object its events run on."""

    iid: int
    name: str
    config: Any
    plugin: Any
    start_time: float


def prepare_registry(path: Path) -> None:
    """Empty (or create) the registry folder: ids of a previous server mean nothing."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


class Instances:
    """This worker's view of the server's instances, backed by the registry folder."""

    def __init__(self, module: Module, registry: Path) -> None:
        self.module = module
        self.registry = registry
        self._local: dict[int, Instance] = {}

    def start(self, params: Any) -> dict[str, Any]:
        """``plugin.StartInstance``: ``{"Name", "Config": <JSON text>}``."""
        name = params.get("Name") if isinstance(params, dict) else None
        if name != self.module.name:
            raise UnknownPlugin(name)
        text = params.get("Config")
        config = json.loads(text)  # its error text is Kong's answer, as with kong-pdk
        now = time.time()
        for _ in range(8):
            iid = random_instance_id()
            if iid not in self._local and self._record(iid, name, text, now):
                break
        else:  # pragma: no cover - 8 collisions in a 2**39 space
            raise RuntimeError("could not allocate a plugin instance id")
        self._build(iid, name, config, now)
        self.module.last_start_instance_time = now
        log.info("instance #%d of %s started", iid, name)
        return {"Name": name, "Id": iid, "Config": config, "StartTime": now}

    def get(self, iid: Any) -> Instance:
        """The instance for `iid`, loaded from the registry if another worker started it."""
        instance = self._local.get(iid) if isinstance(iid, int) else None
        if instance is not None:
            return instance
        if not isinstance(iid, int) or isinstance(iid, bool):
            raise NoInstance(iid)
        try:
            record = json.loads((self.registry / f"{iid}.json").read_text())
            return self._build(iid, record["Name"], json.loads(record["Config"]), record["T"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise NoInstance(iid) from exc

    def close(self, iid: Any) -> dict[str, Any]:
        """``plugin.CloseInstance``."""
        instance = self.get(iid)
        self._local.pop(instance.iid, None)
        (self.registry / f"{instance.iid}.json").unlink(missing_ok=True)
        self.module.last_close_instance_time = time.time()
        return {"Name": instance.name, "Id": instance.iid, "Config": instance.config}

    def status(self, iid: Any) -> dict[str, Any]:
        """``plugin.InstanceStatus``."""
        instance = self.get(iid)
        return {
            "Name": instance.name,
            "Id": instance.iid,
            "Config": instance.config,
            "StartTime": instance.start_time,
        }

    def all_status(self) -> list[dict[str, Any]]:
        return [self.status(iid) for iid in sorted(self._local)]

    def sweep(self) -> int:
        """Drop local instances another worker closed; returns how many."""
        gone = [iid for iid in self._local if not (self.registry / f"{iid}.json").exists()]
        for iid in gone:
            del self._local[iid]
        return len(gone)

    def _record(self, iid: int, name: str, text: str, now: float) -> bool:
        path = self.registry / f"{iid}.json"
        tmp = self.registry / f".{iid}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"Name": name, "Config": text, "T": now}))
        try:
            os.link(tmp, path)  # fails if another worker drew the same id
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def _build(self, iid: int, name: str, config: Any, start_time: float) -> Instance:
        plugin = self.module.cls(config)
        instance = Instance(iid, name, config, plugin, start_time)
        self._local[iid] = instance
        return instance

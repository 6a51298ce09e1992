"""The round trips that write `RedisGenerations` records: a purge (bump, hard or soft, and
claim an event id), a replay of kept purges, a restore of lost records. Each reads back
what every record holds afterwards, so the caller learns the values at once instead of
after its cache time.

Claims: ``{namespace}:purge-event:<id>``, ``SET NX PX`` (the lifetime is the caller's).

* A standalone server: one `PURGE_LUA` call for all the records and the claim together, so
  claiming the id and bumping are atomic (a purge is never claimed and then lost).
* A Redis Cluster (records and claim key live in different slots, which one script may not
  touch): is the id claimed (``EXISTS``)? If not, one script per record, pipelined, and only
  then the claim (``SET NX PX``). So a sidecar that dies mid-way leaves the id unclaimed
  (the next one applying the event bumps again), never claimed and not applied. Not
  guaranteed there: two sidecars applying one event at the same instant may both bump
  (one extra miss per entry stamped in between).

Nothing here catches driver errors: the caller reports them (`RedisGenerations`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sidecar.cluster.generation_known import Replied
from sidecar.cluster.generation_scripts import PURGE_LUA, RESTORE_LUA, purge_args

__all__ = ["Replied", "purge_in_redis", "replay_in_redis", "restore_in_redis"]


async def purge_in_redis(
    client: Any,
    *,
    cluster: bool,
    keys: Sequence[str],
    records: Sequence[tuple[int, int]],
    soft: bool,
    now_ms: int,
    claim_key: str = "",
    claim_ms: int = 0,
) -> tuple[bool, list[Replied]]:
    """Bump `keys` (each with its (nonce, known lifetime) in `records`), only if the claim
    `claim_key` is new when one is given; whether it was, and each record afterwards."""
    claiming = bool(claim_key) and claim_ms > 0
    if not cluster:
        all_keys = [claim_key, *keys] if claiming else list(keys)
        args = purge_args(claim_ms if claiming else 0, soft, now_ms, list(records))
        reply = await client.execute_command("EVAL", PURGE_LUA, len(all_keys), *all_keys, *args)
        return bool(int(reply[0])), _pairs(reply[1:])
    if claiming and await client.exists(claim_key):
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
            pipe.pttl(key)
        return False, _pairs(await pipe.execute())
    pipe = client.pipeline(transaction=False)
    for key, record in zip(keys, records, strict=True):
        pipe.execute_command("EVAL", PURGE_LUA, 1, key, *purge_args(0, soft, now_ms, [record]))
    replies = await pipe.execute()
    if claiming:
        await client.set(claim_key, "1", nx=True, px=claim_ms)
    return True, [_pairs(reply[1:])[0] for reply in replies]


async def replay_in_redis(
    client: Any, items: Sequence[tuple[str, bool, int, int]], now_ms: int
) -> list[Replied]:
    """Apply kept purges, each (key, soft, nonce, known lifetime), in one pipeline of
    one-record scripts (so it works on a cluster too); each record afterwards."""
    pipe = client.pipeline(transaction=False)
    for key, soft, nonce, lifetime in items:
        pipe.execute_command(
            "EVAL", PURGE_LUA, 1, key, *purge_args(0, soft, now_ms, [(nonce, lifetime)])
        )
    return [_pairs(reply[1:])[0] for reply in await pipe.execute()]


async def restore_in_redis(client: Any, items: Sequence[tuple[str, str, int]]) -> list[Replied]:
    """Put back records Redis lost, each (key, record string, lifetime ms), unless one is
    there again (another node restored it first); each record afterwards."""
    pipe = client.pipeline(transaction=False)
    for key, value, lifetime in items:
        pipe.execute_command("EVAL", RESTORE_LUA, 1, key, value, lifetime)
    return [(raw, int(ttl)) for raw, ttl in await pipe.execute()]


def _pairs(flat: Sequence[Any]) -> list[Replied]:
    return [(flat[i], int(flat[i + 1])) for i in range(0, len(flat), 2)]

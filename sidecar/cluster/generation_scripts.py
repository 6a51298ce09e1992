"""The Redis side of `RedisGenerations` (`sidecar.cluster.generations`): the Lua scripts
that stamp, restore and purge records atomically on the server, and how a value read back
is understood.

Record format (a string): the nonce (`sidecar.engine.generations.new_nonce`, negative),
then, only after soft purges, the values they replaced with when, newest first, at most
`MAX_SOFT`: ``"-812 -455@1767225600000 -93@1767225500000"`` (`encode_record`,
`parse_record`). A hard purge writes a bare nonce again. A bare nonce is what every build
before soft purges wrote and still reads the same. A positive value is a counter written by
an older build still and reads as no record. (Builds before soft purges cannot read a
record carrying soft values: finish an upgrade before the first soft purge.)

What the scripts do NOT do: compare record values numerically (Lua numbers are doubles:
they are compared as strings), or, on a Redis Cluster, claim an event id and purge in one
script (`PURGE_LUA` with a claim touches the claim key and the records: standalone servers
only; `sidecar.cluster.generation_purge` claims first on a cluster).
"""

from __future__ import annotations

from typing import Any

from sidecar.engine.generations import MAX_SOFT, Soft

#: KEYS[1] record; ARGV nonce, lifetime ms. A missing record, or a counter written by an
#: older build (not negative), becomes the nonce; a record is never shortened. Returns
#: {value, ttl ms}. Values are compared as strings (Lua numbers are doubles).
STAMP_LUA = """
local v = redis.call('GET', KEYS[1])
local want = tonumber(ARGV[2])
if not v or string.sub(v, 1, 1) ~= '-' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', want)
  return {ARGV[1], want}
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < want then
  redis.call('PEXPIRE', KEYS[1], want)
  ttl = want
end
return {v, ttl}
"""
#: KEYS[1] record; ARGV value, lifetime ms. Puts back a record Redis lost, unless one is
#: there (another node restored it first). Returns {value, ttl ms}.
RESTORE_LUA = """
local v = redis.call('GET', KEYS[1])
if v then return {v, redis.call('PTTL', KEYS[1])} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return {ARGV[1], tonumber(ARGV[2])}
"""
#: KEYS: the claim key of an event id when ARGV[1] (its lifetime, ms) is above 0, then the
#: records; ARGV[2] '1' for a soft purge, ARGV[3] now (Unix ms), ARGV[4] the soft values kept
#: at most, then for each record its new nonce and the lifetime this node knows it to have
#: (0: none). With a claim already taken nothing is bumped. A live record takes the nonce
#: keeping its TTL (soft: the replaced value goes first in its list; hard: the list goes); a
#: missing one is left missing (nothing to purge) unless the caller knows it (lifetime > 0:
#: Redis lost it; set it so that nobody restores the value before the purge); an older
#: build's counter is deleted. Returns {claimed 0/1, then value-or-nil and PTTL of each}.
PURGE_LUA = """
local first, claimed = 1, 1
local claim_ms = tonumber(ARGV[1])
if claim_ms > 0 then
  first = 2
  if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', claim_ms) then claimed = 0 end
end
local soft, now, keep = ARGV[2] == '1', ARGV[3], tonumber(ARGV[4])
local out = {claimed}
for i = first, #KEYS do
  local key, a = KEYS[i], 5 + 2 * (i - first)
  if claimed == 1 then
    local v = redis.call('GET', key)
    if not v then
      local lifetime = tonumber(ARGV[a + 1])
      if lifetime > 0 then redis.call('SET', key, ARGV[a], 'PX', lifetime) end
    elseif string.sub(v, 1, 1) ~= '-' then
      redis.call('DEL', key)
    elseif soft then
      local new, n = ARGV[a], 0
      for tok in string.gmatch(v, '%S+') do
        if n == 0 then
          new = new .. ' ' .. tok .. '@' .. now
        elseif n < keep and string.find(tok, '@', 1, true) then
          new = new .. ' ' .. tok
        end
        n = n + 1
      end
      redis.call('SET', key, new, 'KEEPTTL')
    else
      redis.call('SET', key, ARGV[a], 'KEEPTTL')
    end
  end
  out[#out + 1] = redis.call('GET', key)
  out[#out + 1] = redis.call('PTTL', key)
end
return out
"""


def purge_args(
    claim_ms: int, soft: bool, now_ms: int, records: list[tuple[int, int]]
) -> list[int | str]:
    """ARGV of `PURGE_LUA`: `records` are (nonce, lifetime ms) in the order of its KEYS."""
    args: list[int | str] = [claim_ms, "1" if soft else "0", now_ms, MAX_SOFT]
    for nonce, lifetime in records:
        args += [nonce, lifetime]
    return args


def encode_record(value: int, soft: Soft = ()) -> str:
    """The string stored for a record (see the module doc)."""
    return " ".join([str(value), *(f"{old}@{at}" for old, at in soft)])


def parse_record(raw: Any) -> tuple[int, Soft]:
    """A record read from Redis: its nonce and soft-replaced values, or (0, ()) when it is
    absent, an older build's counter, or not a record at all."""
    if raw is None:
        return 0, ()
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)
    first, *rest = text.split() or ["0"]
    try:
        value = int(first)
        soft = tuple((int(old), int(at)) for old, _, at in (t.partition("@") for t in rest))
    except ValueError:
        return 0, ()
    return (value, soft[:MAX_SOFT]) if value < 0 else (0, ())


def record_value(raw: Any) -> int:
    """A record value read from Redis: the nonce, or 0 (absent, or an older counter)."""
    return parse_record(raw)[0]

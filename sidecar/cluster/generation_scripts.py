"""The Redis side of `RedisGenerations` (`sidecar.cluster.generations`): the Lua scripts
that stamp, restore and bump a purge record atomically on the server, and how a value read
back is understood. Records are strings holding a negative nonce
(`sidecar.engine.generations.new_nonce`); a positive value is a counter written by an
older build and reads as no record.

What the scripts do NOT do: touch more than the one key they are given (they are safe on
a Redis Cluster), or compare record values numerically (Lua numbers are doubles: they are
compared as strings).
"""

from __future__ import annotations

from typing import Any

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
#: KEYS[1] record; ARGV nonce, lifetime ms. A live record takes the nonce, keeping its TTL
#: (returns 1); no record: nothing to purge (0) unless the caller knows the record (lifetime
#: > 0: Redis lost it; set it, so that nobody restores the value before the purge); an
#: older build's counter is deleted (0).
BUMP_LUA = """
local v = redis.call('GET', KEYS[1])
if not v then
  local lifetime = tonumber(ARGV[2])
  if lifetime > 0 then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', lifetime)
    return 1
  end
  return 0
end
if string.sub(v, 1, 1) ~= '-' then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
return 1
"""


def record_value(raw: Any) -> int:
    """A record value read from Redis: the nonce, or 0 (absent, or an older counter)."""
    if raw is None:
        return 0
    number = int(raw)
    return number if number < 0 else 0

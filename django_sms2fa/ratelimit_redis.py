"""The limits in one Redis round trip: Lua scripts for the send guard and the guess.

:mod:`~django_sms2fa.ratelimit` keeps every count with generic cache calls
(``add``/``incr``/``get``), which any atomic cache can run — but each is a
round trip, about 18 for one request and 7 for one verify. When the limits
cache is Redis (Django's ``RedisCache``, or django-redis's ``RedisCache`` with
its default or Sentinel client), the same rules run here instead, as one Lua
script per step. Redis runs a script atomically, so the limits stay exact
across processes, and a script checks every limit before it takes any:
a refusal by a later limit leaves nothing to give back.

The keys and their values are the generic path's (integers only — times in
milliseconds — which both Redis backends store as plain numbers), so the two
paths read each other's state: the admin's unlock and the tools that go through
the generic calls see what a script wrote.

Every key of one script carries the same hash tag (``{sms2fa}``, see
``ratelimit._key``), so that a script's keys would share a slot on a Redis Cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from .exceptions import LimitsUnavailable

logger = logging.getLogger("django_sms2fa")

# Shared by the scripts: the time left of a lock (ms), and the failures.
_LOCK_LEFT = """
local function lock_left(fs_key, ft_key, now, threshold)
  local fails = tonumber(redis.call('GET', fs_key)) or 0
  if fails < threshold then return 0, fails end
  local last = tonumber(redis.call('GET', ft_key))
  if not last then return 0, fails end
  local delay = math.min(2 ^ math.min(fails - 1, 12), 3600) * 1000
  local left = last + delay - now
  if left > 0 then return left, fails end
  return 0, fails
end
"""

# The pumping breaker's count of a verification (a number proved itself).
_PUMP_VERIFIED = """
local function pump_verified(known_key, ok_key, proved, ok_ttl, known_ttl)
  if proved == 0 and redis.call('EXISTS', known_key) == 0 then
    if redis.call('INCR', ok_key) == 1 then redis.call('EXPIRE', ok_key, ok_ttl) end
  end
  redis.call('SET', known_key, 1, 'EX', known_ttl)
end
"""

#: KEYS: fail-s, fail-t, pump-open, then one key per take, then pump-known,
#: pump-sent, pump-ok.
#: ARGV: now_ms, lock threshold, check the breaker (0/1), number of takes, then
#: per take: kind (1 cooldown, 0 window), count, period (s), ttl (s), retry
#: at (ms, a window's end); then the pump count: mode (0 none, 1 count),
#: proved (0/1), MIN_SENDS, MIN_VERIFIED_RATIO, SUSPEND_FOR (s), sent ttl (s),
#: known ttl (s).
#: Returns {0, tripped (0/1), counted (0/1)} or a refusal {1, ms} locked,
#: {2, ms} suspended, {3, ms, index of the take (1-based)} rate limited.
SEND_GUARD = (
    _LOCK_LEFT
    + """
local now = tonumber(ARGV[1])
local left = lock_left(KEYS[1], KEYS[2], now, tonumber(ARGV[2]))
if left > 0 then return {1, math.ceil(left)} end
if ARGV[3] == '1' then
  local open_until = tonumber(redis.call('GET', KEYS[3]))
  if open_until and open_until > now then return {2, math.ceil(open_until - now)} end
end
local n = tonumber(ARGV[4])
local a = 5
for i = 1, n do
  local key = KEYS[3 + i]
  if ARGV[a] == '1' then
    local until_ms = tonumber(redis.call('GET', key))
    if until_ms then return {3, math.max(math.ceil(until_ms - now), 1000), i} end
    if redis.call('EXISTS', key) == 1 then return {3, tonumber(ARGV[a + 2]) * 1000, i} end
  else
    local count = tonumber(redis.call('GET', key)) or 0
    if count + 1 > tonumber(ARGV[a + 1]) then
      return {3, math.max(tonumber(ARGV[a + 4]) - now, 1000), i}
    end
  end
  a = a + 5
end
a = 5
for i = 1, n do
  local key = KEYS[3 + i]
  if ARGV[a] == '1' then
    local period = tonumber(ARGV[a + 2])
    redis.call('SET', key, now + period * 1000, 'EX', period)
  else
    if redis.call('INCR', key) == 1 then redis.call('EXPIRE', key, tonumber(ARGV[a + 3])) end
  end
  a = a + 5
end
local tripped, counted = 0, 0
if ARGV[a] == '1' then
  local known_key, sent_key, ok_key = KEYS[4 + n], KEYS[5 + n], KEYS[6 + n]
  local known_ttl = tonumber(ARGV[a + 6])
  if ARGV[a + 1] == '1' or redis.call('EXISTS', known_key) == 1 then
    redis.call('SET', known_key, 1, 'EX', known_ttl)
  else
    counted = 1
    local sent = redis.call('INCR', sent_key)
    if sent == 1 then redis.call('EXPIRE', sent_key, tonumber(ARGV[a + 5])) end
    if sent >= tonumber(ARGV[a + 2]) then
      local ok = tonumber(redis.call('GET', ok_key)) or 0
      if ok / sent < tonumber(ARGV[a + 3]) then
        local suspend = tonumber(ARGV[a + 4])
        if redis.call('SET', KEYS[3], now + suspend * 1000, 'EX', suspend, 'NX') then
          tripped = 1
        end
      end
    end
  end
end
return {0, tripped, counted}
"""
)

#: KEYS: fail-n, fail-s, fail-t, gate, pump-known, pump-ok.
#: ARGV: now_ms, threshold, memory (s), right (0/1), count the verification
#: (0/1), proved (0/1), ok ttl (s), known ttl (s).
#: Returns {0, place, gated} (a right guess: {0, place, 0}, its count
#: already cleared), or a refusal: {1, ms} the lock runs, {2, ms} wait for the
#: guesses in flight (or the one holding the gate).
RESERVE_GUESS = (
    _LOCK_LEFT
    + _PUMP_VERIFIED
    + """
local now = tonumber(ARGV[1])
local threshold = tonumber(ARGV[2])
local left, settled = lock_left(KEYS[2], KEYS[3], now, threshold)
if left > 0 then return {1, math.ceil(left)} end
local place = (tonumber(redis.call('GET', KEYS[1])) or 0) + 1
local gated = 0
if place >= threshold then
  if redis.call('EXISTS', KEYS[4]) == 1 then return {2, 1000} end
  if settled < threshold - 1 then return {2, 1000} end
  gated = 1
end
if ARGV[4] == '1' then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  if ARGV[5] == '1' then
    pump_verified(KEYS[5], KEYS[6], tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]))
  end
  return {0, place, 0}
end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
if gated == 1 then redis.call('SET', KEYS[4], 1, 'EX', 60) end
return {0, place, gated}
"""
)

#: KEYS: fail-n, fail-s, fail-t, gate, pump-known, pump-ok.
#: ARGV: verdict ('wrong', 'right' or 'release'), now_ms, memory (s), gated
#: (0/1), count the verification (0/1), proved, ok ttl, known ttl.
#: Returns the settled failures after a wrong guess, else 0.
SETTLE_GUESS = (
    _PUMP_VERIFIED
    + """
local verdict = ARGV[1]
local result = 0
if verdict == 'wrong' then
  local memory = tonumber(ARGV[3])
  redis.call('EXPIRE', KEYS[1], memory)
  result = redis.call('INCR', KEYS[2])
  redis.call('EXPIRE', KEYS[2], memory)
  redis.call('SET', KEYS[3], ARGV[2], 'EX', memory)
elseif verdict == 'right' then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  if ARGV[5] == '1' then
    pump_verified(KEYS[5], KEYS[6], tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]))
  end
elseif redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('DECR', KEYS[1])
end
if ARGV[4] == '1' then redis.call('DEL', KEYS[4]) end
return result
"""
)


#: KEYS: per subject (the username, then the IP if any): its lock, its count.
#: ARGV: now_ms, memory (s), then per subject its threshold.
#: Returns {0, locks set (bit 1 the username's, bit 2 the IP's)} or a refusal
#: {1, index of the subject (1-based), ms}: its lock runs.
PASSWORD_TAKE = """
local now = tonumber(ARGV[1])
local n = #KEYS / 2
for i = 1, n do
  local until_ms = tonumber(redis.call('GET', KEYS[2 * i - 1]))
  if until_ms and until_ms > now then return {1, i, math.ceil(until_ms - now)} end
end
local locks = 0
for i = 1, n do
  local count = redis.call('INCR', KEYS[2 * i])
  redis.call('EXPIRE', KEYS[2 * i], tonumber(ARGV[2]))
  local threshold = tonumber(ARGV[2 + i])
  if count >= threshold then
    local delay = math.min(2 ^ math.min(count - threshold + 9, 12), 3600)
    redis.call('SET', KEYS[2 * i - 1], now + delay * 1000, 'EX', delay)
    locks = locks + i
  end
end
return {0, locks}
"""

#: KEYS: the counts this guess took, then the locks it set, then the
#: username's count to clear (a right password) or nothing.
#: ARGV: the number of counts.
PASSWORD_GIVE_BACK = """
local counts = tonumber(ARGV[1])
for i = 1, #KEYS do
  if i <= counts then
    if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('DECR', KEYS[i]) end
  else
    redis.call('DEL', KEYS[i])
  end
end
return 0
"""


class RedisScripts:
    """Runs the scripts on the cache's own Redis connection pool.

    ``client()`` returns the writable Redis client of the cache (the first
    server of a ``LOCATION`` list, the master behind Sentinel); keys are made
    with the cache's own ``make_key`` (its ``KEY_PREFIX``, ``VERSION`` and
    ``KEY_FUNCTION``), so they are the keys the generic calls use.
    """

    def __init__(self, alias: str, backend: Any, client_getter: Any) -> None:
        from redis.commands.core import Script

        self.alias = alias
        self._backend = backend
        self._client = client_getter
        first = client_getter()
        self._scripts = {
            "send": Script(first, SEND_GUARD),
            "reserve": Script(first, RESERVE_GUESS),
            "settle": Script(first, SETTLE_GUESS),
            "password": Script(first, PASSWORD_TAKE),
            "password-back": Script(first, PASSWORD_GIVE_BACK),
        }

    def key(self, key: str) -> str:
        return str(self._backend.make_key(key))

    def run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        from redis.exceptions import RedisError

        try:
            return self._scripts[name]([self.key(k) for k in keys], args, client=self._client())
        except RedisError as err:
            logger.error(
                "sms2fa: the limits cache %r is unavailable (%s in the %s script); "
                "refusing the request with 503",
                self.alias,
                type(err).__name__,
                name,
            )
            raise LimitsUnavailable(cache=self.alias) from err


def scripts_for(alias: str, backend: Any) -> RedisScripts | None:
    """The scripts for ``backend`` if it is a Redis cache they can run on, else ``None``."""
    getter = _client_getter(backend)
    if getter is None:
        return None
    try:
        return RedisScripts(alias, backend, getter)
    except Exception as err:  # a client that cannot even be built: use the generic path
        logger.warning(
            "sms2fa: the limits cache %r looks like Redis but its client could not be "
            "used (%s); counting with generic cache calls",
            alias,
            type(err).__name__,
        )
        return None


def _client_getter(backend: Any) -> Any | None:
    try:
        from django.core.cache.backends.redis import RedisCache
    except ImportError:  # redis-py is not installed
        return None
    if isinstance(backend, RedisCache):
        return lambda: backend._cache.get_client(write=True)
    try:
        from django_redis.cache import RedisCache as DjangoRedisCache
        from django_redis.client import DefaultClient, ShardClient
    except ImportError:
        return None
    if isinstance(backend, DjangoRedisCache):
        client = backend.client
        # The default and Sentinel clients write to one server; a sharded
        # client spreads keys over several, where one script cannot reach them.
        if isinstance(client, DefaultClient) and not isinstance(client, ShardClient):
            return lambda: client.get_client(write=True)
    return None

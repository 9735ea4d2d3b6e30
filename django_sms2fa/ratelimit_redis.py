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

Each key carries a hash tag named after what it counts (see ``ratelimit._key``),
so the limits spread over the slots of a Redis Cluster. There a step's keys may
sit in several slots, and :mod:`~django_sms2fa.ratelimit_cluster` runs the same
scripts once per slot, in one pipelined batch. Here, on one server, every step
is one script: :meth:`RedisScripts.slot` puts every key in the same group.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .exceptions import LimitsUnavailable

if TYPE_CHECKING:
    from .ratelimit_cluster import ClusterScripts

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

#: Parts of the send guard, each present or not (on a Redis Cluster one script
#: runs per slot, with the parts whose keys are in that slot; on one Redis, one
#: script has them all).
#: KEYS: fail-s, fail-t (the lockout part), pump-open (the breaker's check), one
#: key per take, then pump-known, pump-sent, pump-ok, pump-open (the breaker's
#: count of the send).
#: ARGV: now_ms, lock threshold (0: no lockout part), check the breaker (0/1),
#: number of takes, then per take: kind (1 cooldown, 0 window), count, period
#: (s), ttl (s), retry at (ms, a window's end); then the pump count: mode (0
#: none, 1 count), proved (0/1), MIN_SENDS, MIN_VERIFIED_RATIO, SUSPEND_FOR (s),
#: sent ttl (s), known ttl (s).
#: Returns {0, tripped, counted, marked} (each 0/1; marked: pump-known was set
#: where there was none) or a refusal {1, ms} locked, {2, ms} suspended,
#: {3, ms, index of the take in this script (1-based)} rate limited.
SEND_GUARD = (
    _LOCK_LEFT
    + """
local now = tonumber(ARGV[1])
local threshold = tonumber(ARGV[2])
local k = 1
if threshold > 0 then
  local left = lock_left(KEYS[1], KEYS[2], now, threshold)
  if left > 0 then return {1, math.ceil(left)} end
  k = 3
end
if ARGV[3] == '1' then
  local open_until = tonumber(redis.call('GET', KEYS[k]))
  if open_until and open_until > now then return {2, math.ceil(open_until - now)} end
  k = k + 1
end
local n = tonumber(ARGV[4])
local a = 5
for i = 1, n do
  local key = KEYS[k + i - 1]
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
  local key = KEYS[k + i - 1]
  if ARGV[a] == '1' then
    local period = tonumber(ARGV[a + 2])
    redis.call('SET', key, now + period * 1000, 'EX', period)
  else
    if redis.call('INCR', key) == 1 then redis.call('EXPIRE', key, tonumber(ARGV[a + 3])) end
  end
  a = a + 5
end
local tripped, counted, marked = 0, 0, 0
if ARGV[a] == '1' then
  local known_key, sent_key, ok_key, open_key = KEYS[k + n], KEYS[k + n + 1], KEYS[k + n + 2],
    KEYS[k + n + 3]
  local known = redis.call('EXISTS', known_key) == 1
  if ARGV[a + 1] == '1' or known then
    if not known then marked = 1 end
    redis.call('SET', known_key, 1, 'EX', tonumber(ARGV[a + 6]))
  else
    counted = 1
    local sent = redis.call('INCR', sent_key)
    if sent == 1 then redis.call('EXPIRE', sent_key, tonumber(ARGV[a + 5])) end
    if sent >= tonumber(ARGV[a + 2]) then
      local ok = tonumber(redis.call('GET', ok_key)) or 0
      if ok / sent < tonumber(ARGV[a + 3]) then
        local suspend = tonumber(ARGV[a + 4])
        if redis.call('SET', open_key, now + suspend * 1000, 'EX', suspend, 'NX') then
          tripped = 1
        end
      end
    end
  end
end
return {0, tripped, counted, marked}
"""
)

#: KEYS: fail-n, fail-s, fail-t, gate, then (only to count the verification)
#: pump-known, pump-ok.
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

#: KEYS: fail-n, fail-s, fail-t, gate, then (only to count the verification)
#: pump-known, pump-ok.
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

#: The breaker's count of a verification alone, for a Redis Cluster where the
#: number's prefix is in another slot than the guess's count (on one Redis it
#: rides along in RESERVE_GUESS / SETTLE_GUESS).
#: KEYS: pump-known, pump-ok. ARGV: proved (0/1), ok ttl (s), known ttl (s).
PUMP_VERIFIED = (
    _PUMP_VERIFIED
    + """
pump_verified(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
return 0
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
#: Also the give-back of a send on a Redis Cluster (the counts: windows and the
#: breaker's sent count; then the keys to delete: cooldowns, a trip, a mark).
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

    def slot(self, key: str) -> int:
        """One server holds every key: a step's parts always go in one script
        (a Redis Cluster's :class:`~django_sms2fa.ratelimit_cluster.ClusterScripts`
        answers the key's slot instead)."""
        return 0

    def run_batch(
        self,
        calls: Sequence[tuple[str, Sequence[str], Sequence[Any]]],
        *,
        undo: Callable[[list[Any]], None] | None = None,
    ) -> list[Any]:
        """Run ``(name, keys, args)`` scripts. On one server a step is one
        script, which runs whole or not at all: ``undo`` (what the cluster
        runner calls to give back the scripts that ran when others failed)
        has nothing to do here."""
        return [self.run(name, keys, args) for name, keys, args in calls]

    def run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        from redis.exceptions import RedisError

        from .conf import app_settings

        replicas = app_settings.LIMITS_WAIT_REPLICAS
        try:
            if replicas:
                return self._run_and_wait(name, keys, args, replicas)
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

    def _run_and_wait(
        self, name: str, keys: Sequence[str], args: Sequence[Any], replicas: int
    ) -> Any:
        """The script, then ``WAIT replicas ms``, in one round trip.

        Replication is asynchronous: a failover promotes a replica that may
        not have received the last counts, and a count that goes back lets a
        limit leak. ``WAIT`` answers how many replicas acknowledged this
        connection's writes; with fewer than ``replicas`` the step is refused
        (503) — the count it may have taken errs on the safe side.

        A non-transactional pipeline, not redis-py's ``Script`` on a pipeline
        (which would send ``SCRIPT EXISTS`` first: one more round trip). A
        server that has not seen the script (a primary just promoted: scripts
        are not replicated) answers ``NOSCRIPT``; the retry loads it in the
        same round trip as the second attempt.
        """
        from redis.exceptions import NoScriptError

        from .conf import app_settings

        script = self._scripts[name]
        timeout_ms = max(1, round(app_settings.LIMITS_WAIT_TIMEOUT * 1000))
        client = self._client()
        command = (script.sha, len(keys), *[self.key(k) for k in keys], *args)
        pipe = client.pipeline(transaction=False)
        pipe.evalsha(*command)
        pipe.wait(replicas, timeout_ms)
        result, acked = pipe.execute(raise_on_error=False)
        if isinstance(result, NoScriptError):
            pipe = client.pipeline(transaction=False)
            pipe.script_load(script.script)
            pipe.evalsha(*command)
            pipe.wait(replicas, timeout_ms)
            _sha, result, acked = pipe.execute(raise_on_error=False)
        for answer in (result, acked):
            if isinstance(answer, Exception):  # a ResponseError: RedisError, handled in run()
                raise answer
        if int(acked) < replicas:
            logger.error(
                "sms2fa: the limits cache %r: %d of %d replicas acknowledged the %s "
                "script's writes within %d ms (LIMITS_WAIT_REPLICAS); refusing the "
                "request with 503",
                self.alias,
                int(acked),
                replicas,
                name,
                timeout_ms,
            )
            _ask_sentinel_again(client)
            raise LimitsUnavailable(cache=self.alias)
        return result


def _ask_sentinel_again(client: Any) -> None:
    """After a shortfall, have a Sentinel pool ask where the primary is now.

    A shortfall is also what the old primary answers once a failover promoted
    its replica: until Sentinel demotes it (about 10 s later) it still takes
    writes, and pooled connections stay on it. Asking now moves the pool to
    the new primary (redis-py drops the connections to the old one). Other
    pools have no such call: nothing to do."""
    from redis.exceptions import RedisError

    rediscover = getattr(client.connection_pool, "get_master_address", None)
    if rediscover is None:
        return
    try:
        rediscover()
    except RedisError:  # no Sentinel answers: the next step's connect says so
        pass


def scripts_for(alias: str, backend: Any) -> RedisScripts | ClusterScripts | None:
    """The scripts for ``backend`` if it is a Redis cache they can run on, else ``None``."""
    from .ratelimit_cluster import ClusterScripts, is_cluster_cache

    if is_cluster_cache(backend):  # one script per slot (django_sms2fa.redis_cluster)
        return ClusterScripts(alias, backend)
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

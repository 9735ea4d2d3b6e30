"""The limit scripts on a Redis Cluster: one script per slot, one batch per step.

A Lua script may only touch keys of one hash slot, and the keys of one step are
tagged by what they count (``ratelimit._key``): the lockout by its subject, a
rate by its scope and subject, the breaker by the number prefix, the password
counts by their scope and subject. So a send's limits sit in several slots.
:mod:`~django_sms2fa.ratelimit` groups each step's parts by slot
(:meth:`ClusterScripts.slot`) and asks for one script per slot; this module
sends them together, as one pipelined batch (redis-py's ``ClusterPipeline``
writes to every node before it reads any): one round trip.

Each slot's script checks every limit of its slot before it takes any, as on
one Redis. A refusal by one slot is answered after the batch, and what the other
slots' scripts took is given back in a second batch (``ratelimit``'s give-back:
windows decremented, cooldowns it set deleted, the breaker's count and trip of
this send undone).

A script the node does not have (``NOSCRIPT``: after a restart, a failover, a
``SCRIPT FLUSH``) is sent again as ``EVAL`` with its body, which loads it on that
node and runs it, in one more batch. Every Redis error ends the step as
:class:`~django_sms2fa.exceptions.LimitsUnavailable` (503), as on one Redis; if
some scripts of the batch ran before the error, what they took is given back
first (as far as the cluster still answers). With ``LIMITS_WAIT_REPLICAS`` the
batch ends with one ``WAIT`` per node written, as on Sentinel.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from .exceptions import LimitsUnavailable
from .ratelimit_redis import (
    PASSWORD_GIVE_BACK,
    PASSWORD_TAKE,
    PUMP_VERIFIED,
    RESERVE_GUESS,
    SEND_GUARD,
    SETTLE_GUESS,
)

logger = logging.getLogger("django_sms2fa")

#: The backend whose limits run here (documented in docs/howto/redis-cluster.md).
CLUSTER_BACKEND = "django_sms2fa.redis_cluster.RedisClusterCache"

_BODIES = {
    "send": SEND_GUARD,
    "reserve": RESERVE_GUESS,
    "settle": SETTLE_GUESS,
    "verified": PUMP_VERIFIED,
    "password": PASSWORD_TAKE,
    "password-back": PASSWORD_GIVE_BACK,
}

Call = tuple[str, Sequence[str], Sequence[Any]]


def is_cluster_cache(backend: Any) -> bool:
    """Whether ``backend`` is a :class:`~django_sms2fa.redis_cluster.RedisClusterCache`."""
    try:
        from .redis_cluster import RedisClusterCache
    except ImportError:  # redis-py is not installed
        return False
    return isinstance(backend, RedisClusterCache)


class ClusterScripts:
    """Runs the limit scripts on the cache's ``RedisCluster`` client.

    Keys are made with the cache's own ``make_key``, so they are the keys the
    generic calls (the admin's unlock, ``lock_state``) read and write.
    """

    def __init__(self, alias: str, backend: Any) -> None:
        self.alias = alias
        self._backend = backend
        self._scripts = {
            name: (body, hashlib.sha1(body.encode()).hexdigest()) for name, body in _BODIES.items()
        }

    def key(self, key: str) -> str:
        return str(self._backend.make_key(key))

    def slot(self, key: str) -> int:
        """The hash slot of ``key`` as the cache stores it (its ``KEY_PREFIX``
        included: were there braces in it, they would pick the slot)."""
        from redis.crc import key_slot

        return int(key_slot(self.key(key).encode()))

    def run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return self.run_batch([(name, keys, args)])[0]

    def run_batch(
        self, calls: Sequence[Call], *, undo: Callable[[list[Any]], None] | None = None
    ) -> list[Any]:
        """Run the ``(name, keys, args)`` scripts, each on the node of its keys'
        slot, in one pipelined batch; their results in order.

        :param undo: given the results (``None`` for a script that failed) when
            some scripts failed and others ran: gives back what those took.
        :raises LimitsUnavailable: a script could not run (after ``undo``).
        """
        from redis.exceptions import NoScriptError, RedisClusterException, RedisError

        names = ", ".join(sorted({name for name, _keys, _args in calls}))
        made = [(name, [self.key(k) for k in keys], list(args)) for name, keys, args in calls]
        try:
            results, waits = self._send(made, load=False)
            missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
            if missing:
                again, more = self._send([made[i] for i in missing], load=True)
                for i, result in zip(missing, again, strict=True):
                    results[i] = result
                waits += more
        except (RedisError, RedisClusterException) as err:  # the second is not a RedisError
            raise self._unavailable(err, names) from err
        failed = [result for result in results if isinstance(result, Exception)]
        if not failed:
            self._check_waits(waits, names)
            return results
        ran = [None if isinstance(result, Exception) else result for result in results]
        if undo is not None and any(result is not None for result in ran):
            try:
                undo(ran)
            except LimitsUnavailable:  # logged there; the step answers 503 all the same
                pass
        raise self._unavailable(failed[0], names) from failed[0]

    def _send(self, calls: Sequence[Call], *, load: bool) -> tuple[list[Any], list[Any]]:
        """One pipelined batch: the scripts' results, and the answers of the
        ``WAIT`` sent to each node after its scripts (``LIMITS_WAIT_REPLICAS``;
        none by default)."""
        from .conf import app_settings

        client = self._backend._cache.get_client(write=True)
        replicas = app_settings.LIMITS_WAIT_REPLICAS
        pipe = client.pipeline()
        nodes: dict[str, Any] = {}
        for name, keys, args in calls:
            body, sha = self._scripts[name]
            # EVAL both loads the script on the node of the keys and runs it.
            command, script = ("EVAL", body) if load else ("EVALSHA", sha)
            pipe.execute_command(command, script, len(keys), *keys, *args)
            if replicas:
                node = client.get_node_from_key(keys[0])
                nodes[node.name] = node
        timeout_ms = max(1, round(app_settings.LIMITS_WAIT_TIMEOUT * 1000))
        for node in nodes.values():
            # Last on the node's connection: WAIT counts the writes of its scripts.
            pipe.execute_command("WAIT", replicas, timeout_ms, target_nodes=node)
        answers = list(pipe.execute(raise_on_error=False))
        return answers[: len(calls)], answers[len(calls) :]

    def _check_waits(self, waits: list[Any], names: str) -> None:
        """Fewer replicas than ``LIMITS_WAIT_REPLICAS`` acknowledged a node's
        writes: 503, as on Sentinel (the counts taken stay: the safe side)."""
        from .conf import app_settings

        replicas = app_settings.LIMITS_WAIT_REPLICAS
        for acked in waits:
            if isinstance(acked, Exception):
                raise self._unavailable(acked, names) from acked
            if int(acked) < replicas:
                logger.error(
                    "sms2fa: the limits cache %r: %d of %d replicas acknowledged the %s "
                    "script's writes (LIMITS_WAIT_REPLICAS); refusing the request with 503",
                    self.alias,
                    int(acked),
                    replicas,
                    names,
                )
                raise LimitsUnavailable(cache=self.alias)

    def _unavailable(self, err: BaseException, names: str) -> LimitsUnavailable:
        logger.error(
            "sms2fa: the limits cache %r is unavailable (%s in the %s script); "
            "refusing the request with 503",
            self.alias,
            type(err).__name__,
            names,
        )
        return LimitsUnavailable(cache=self.alias)

"""A Django cache backend on a Redis Cluster, for the limits (and anything else).

Django's ``RedisCache`` talks to one server (or writes to the first of a list),
and django-redis has no cluster client. This backend is Django's ``RedisCache``
with redis-py's ``RedisCluster`` as its client::

    CACHES = {
        "limits": {
            "BACKEND": "django_sms2fa.redis_cluster.RedisClusterCache",
            # Startup nodes: any of the cluster's primaries (a list, or one
            # string with the URLs separated by commas); the client learns the
            # others and the slot map from the first that answers.
            "LOCATION": "redis://10.0.0.1:6379,redis://10.0.0.2:6379",
            # Passed to RedisCluster as they are (``password``, ``ssl``,
            # ``socket_timeout``, ``require_full_coverage``, ...), except
            # Django's own ``serializer``, ``pool_class`` and ``parser_class``.
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    SMS2FA = {"CACHE": "limits"}

The first URL's credentials, TLS (``rediss://``) and query options apply to
every node; the others give only their host and port. A cluster has only
database 0: a URL naming another database is refused when the cache is built.

What differs from ``RedisCache`` is what spans several slots: ``get_many`` reads
with ``mget_nonatomic`` (one ``MGET`` per slot, pipelined), ``set_many`` sends one
``SET ... EX`` per key in one pipeline, ``delete_many`` one ``DEL`` per slot,
``clear`` flushes every primary, and ``incr`` is one atomic script (the key must
exist; Django's two calls could re-create a key that expired between them,
without its expiry). None of these many-key calls is atomic across slots.

The limits of :mod:`django_sms2fa.ratelimit` recognise this backend and run
their scripts once per slot (:mod:`django_sms2fa.ratelimit_cluster`).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

#: ``INCRBY`` only on a key that exists (Django's ``incr`` raises ``ValueError``
#: otherwise), in one atomic step.
_INCR = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return redis.call('INCRBY', KEYS[1], ARGV[1])
"""


class RedisClusterCacheClient(RedisCacheClient):
    """``RedisCacheClient`` whose client is one ``RedisCluster`` for every call."""

    def __init__(
        self,
        servers: list[str],
        serializer: Any = None,
        pool_class: Any = None,
        parser_class: Any = None,
        **options: Any,
    ) -> None:
        super().__init__(servers, serializer=serializer, **options)
        if isinstance(pool_class, str):
            pool_class = import_string(pool_class)
        # RedisCluster makes a pool per node with this class; a parser class
        # is not one of the connection options it passes on.
        self._options = {**options, **({"connection_pool_class": pool_class} if pool_class else {})}
        self._cluster: Any = None
        self._incr: Any = None

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        # One client routes every key to its node; it connects on first use
        # (so an unreachable cluster is an error of the call, not of settings).
        if self._cluster is None:
            from redis.cluster import ClusterNode, RedisCluster

            first, *others = self._servers
            nodes = [ClusterNode(*_host_port(url)) for url in others]
            self._cluster = RedisCluster(url=first, startup_nodes=nodes, **self._options)
        return self._cluster

    def get_many(self, keys: Any) -> dict[Any, Any]:
        keys = list(keys)
        if not keys:
            return {}
        values = self.get_client(None).mget_nonatomic(keys)
        found = zip(keys, values, strict=True)
        return {k: self._serializer.loads(v) for k, v in found if v is not None}

    def set_many(self, data: dict[Any, Any], timeout: int | None) -> None:
        client = self.get_client(None, write=True)
        if timeout == 0:  # Django's rule: a non-positive timeout deletes
            client.delete(*data)
            return
        pipeline = client.pipeline()
        for key, value in data.items():
            pipeline.set(key, self._serializer.dumps(value), ex=timeout)
        pipeline.execute()

    def delete_many(self, keys: Any) -> None:
        keys = list(keys)
        if keys:
            self.get_client(None, write=True).delete(*keys)  # one DEL per slot

    def incr(self, key: Any, delta: int) -> int:
        client = self.get_client(key, write=True)
        if self._incr is None:
            self._incr = client.register_script(_INCR)
        value = self._incr(keys=[key], args=[delta])
        if value is None:
            raise ValueError(f"Key '{key}' not found.")
        return int(value)

    def clear(self) -> bool:
        from redis.cluster import RedisCluster

        client = self.get_client(None, write=True)
        return bool(client.flushdb(target_nodes=RedisCluster.PRIMARIES))


class RedisClusterCache(RedisCache):
    """Django's ``RedisCache`` on a Redis Cluster (see the module's docstring)."""

    def __init__(self, server: str | list[str], params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._servers = [url.strip() for url in self._servers if url.strip()]
        if not self._servers:
            raise ImproperlyConfigured(
                "RedisClusterCache needs LOCATION: one or more redis:// URLs of cluster nodes."
            )
        for url in self._servers:
            _host_port(url)
        self._class = RedisClusterCacheClient


def _host_port(url: str) -> tuple[str, int]:
    """The host and port of a node's URL, which must name database 0 (or none)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ImproperlyConfigured(
            "RedisClusterCache: each LOCATION entry must be a redis:// or rediss:// URL "
            "with a host."
        )
    path = parts.path.strip("/")
    if path and path != "0" or re.search(r"(^|&)db=(?!0(&|$))", parts.query):
        raise ImproperlyConfigured(
            "RedisClusterCache: a Redis Cluster has only database 0; "
            "drop the database number from LOCATION."
        )
    return parts.hostname, parts.port or 6379

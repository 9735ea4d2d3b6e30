"""The limits cache's topology (checks E041, W042, W043, W044).

Each supported topology is silent; each one where a key has no single home
that stays put gets its own id. The checks read settings only: the
addresses below are never connected to (port 1 on loopback answers nothing,
and a check that tried would fail these tests with an error, not pass them).
"""

from __future__ import annotations

from typing import Any

import pytest
from django_redis.client import DefaultClient, ShardClient

from django.core.checks import Error, Warning, run_checks

from django_sms2fa.checks import LimitsTopology, check_limits_topology, limits_topology

REDIS = "django.core.cache.backends.redis.RedisCache"
DJANGO_REDIS = "django_redis.cache.RedisCache"
CLUSTER = "django_sms2fa.redis_cluster.RedisClusterCache"
PYMEMCACHE = "django.core.cache.backends.memcached.PyMemcacheCache"
PYLIBMC = "django.core.cache.backends.memcached.PyLibMCCache"
DEFAULT_CLIENT = "django_redis.client.DefaultClient"
SENTINEL_CLIENT = "django_redis.client.SentinelClient"
SHARD_CLIENT = "django_redis.client.ShardClient"

# A password in every URL: no message may show it.
PASSWORD = "hunter2-s3cr3t"
PRIMARY = f"redis://:{PASSWORD}@127.0.0.1:1/0"
REPLICA = f"redis://:{PASSWORD}@127.0.0.2:1/0"
SHARDS = [PRIMARY, REPLICA, f"redis://:{PASSWORD}@127.0.0.3:1/0"]
MEMCACHED = ["127.0.0.1:1", "127.0.0.2:1"]

SENTINEL: dict[str, Any] = {
    "BACKEND": DJANGO_REDIS,
    "LOCATION": f"redis://:{PASSWORD}@sms2fa/0",
    "OPTIONS": {
        "CLIENT_CLASS": SENTINEL_CLIENT,
        "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
        "SENTINELS": [("127.0.0.1", 1)],
    },
}

TOPOLOGY_IDS = {"sms2fa.E041", "sms2fa.W042", "sms2fa.W043", "sms2fa.W044"}


def django_redis(location: Any, client: str | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {"BACKEND": DJANGO_REDIS, "LOCATION": location}
    if client:
        config["OPTIONS"] = {"CLIENT_CLASS": client}
    return config


def use(settings, config: dict[str, Any], *, wait_replicas: int | None = None) -> None:
    """Point SMS2FA['CACHE'] at ``config`` (an alias of its own, as the docs advise)."""
    settings.CACHES = {**settings.CACHES, "limits": config}
    sms2fa = {**settings.SMS2FA, "CACHE": "limits"}
    sms2fa.pop("LIMITS_WAIT_REPLICAS", None)
    if wait_replicas is not None:
        sms2fa["LIMITS_WAIT_REPLICAS"] = wait_replicas
    settings.SMS2FA = sms2fa


def topology_ids() -> set[str]:
    """The topology ids Django's check framework reports right now (the other
    checks have tests of their own)."""
    return {m.id for m in run_checks(tags=["sms2fa"]) if m.id in TOPOLOGY_IDS}


# (CACHES entry, LIMITS_WAIT_REPLICAS, the kind it is recognised as)
SUPPORTED = [
    pytest.param({"BACKEND": REDIS, "LOCATION": PRIMARY}, None, "redis", id="Django Redis"),
    pytest.param(django_redis(PRIMARY), None, "redis", id="django-redis one server"),
    pytest.param(
        django_redis(PRIMARY, DEFAULT_CLIENT), None, "redis", id="django-redis DefaultClient"
    ),
    # One server holds every key, whatever the client does with it.
    pytest.param(django_redis([PRIMARY], SHARD_CLIENT), None, "redis", id="ShardClient one"),
    pytest.param(
        django_redis(PRIMARY, "tests.test_checks_topology.CustomClient"),
        None,
        "redis",
        id="unknown client one server",
    ),
    pytest.param(
        {"BACKEND": REDIS, "LOCATION": [PRIMARY, REPLICA]},
        1,
        "redis-replicas",
        id="Django Redis primary + replica, waiting",
    ),
    pytest.param(
        {"BACKEND": REDIS, "LOCATION": f"{PRIMARY};{REPLICA}"},
        1,
        "redis-replicas",
        id="Django Redis LOCATION string with ;",
    ),
    pytest.param(
        django_redis(f"{PRIMARY},{REPLICA}"),
        2,
        "redis-replicas",
        id="django-redis master + replica, waiting",
    ),
    pytest.param(
        django_redis([PRIMARY, REPLICA], "django_redis.client.herd.HerdClient"),
        1,
        "redis-replicas",
        id="HerdClient master + replica, waiting",
    ),
    pytest.param(SENTINEL, 1, "redis-sentinel", id="Sentinel, waiting"),
    pytest.param({"BACKEND": CLUSTER, "LOCATION": PRIMARY}, None, "redis-cluster", id="Cluster"),
    pytest.param({"BACKEND": PYMEMCACHE, "LOCATION": "127.0.0.1:1"}, None, "memcached", id="pymc"),
    pytest.param(
        {"BACKEND": PYLIBMC, "LOCATION": ["127.0.0.1:1"]}, None, "memcached", id="pylibmc"
    ),
    # A trailing separator is not a second server.
    pytest.param(
        {"BACKEND": PYMEMCACHE, "LOCATION": "127.0.0.1:1;"}, None, "memcached", id="pymc ;"
    ),
]


class CustomClient:
    """A CLIENT_CLASS django-sms2fa knows nothing about."""


class MyShardClient(ShardClient):
    """Still shards: W042 like its parent."""


class MyDefaultClient(DefaultClient):
    """Could override how it picks a server: unknown (W043) with several."""


@pytest.mark.parametrize(("config", "wait", "kind"), SUPPORTED)
def test_supported_topologies_are_recognised_and_silent(settings, config, wait, kind):
    """Each supported topology is named for what it is, and ``check`` says nothing."""
    assert limits_topology(config).kind == kind
    use(settings, config, wait_replicas=wait)
    assert topology_ids() == set()


# (CACHES entry, LIMITS_WAIT_REPLICAS, kind, the id it gets)
UNSUPPORTED = [
    pytest.param(
        {"BACKEND": PYMEMCACHE, "LOCATION": MEMCACHED},
        None,
        "memcached-hashed",
        "sms2fa.E041",
        id="pymemcache, two servers",
    ),
    pytest.param(
        {"BACKEND": PYLIBMC, "LOCATION": "127.0.0.1:1;127.0.0.2:1,127.0.0.3:1"},
        None,
        "memcached-hashed",
        "sms2fa.E041",
        id="pylibmc, three servers in a string",
    ),
    pytest.param(
        django_redis(SHARDS, SHARD_CLIENT),
        None,
        "redis-sharded",
        "sms2fa.W042",
        id="ShardClient",
    ),
    pytest.param(
        django_redis(",".join(SHARDS), "django_redis.client.sharded.ShardClient"),
        1,
        "redis-sharded",
        "sms2fa.W042",
        id="ShardClient by its module path, URLs in a string",
    ),
    pytest.param(
        django_redis(SHARDS, "tests.test_checks_topology.MyShardClient"),
        None,
        "redis-sharded",
        "sms2fa.W042",
        id="a ShardClient subclass",
    ),
    pytest.param(
        django_redis(SHARDS, "tests.test_checks_topology.CustomClient"),
        1,
        "redis-unknown-client",
        "sms2fa.W043",
        id="unknown CLIENT_CLASS",
    ),
    pytest.param(
        django_redis(SHARDS, "tests.test_checks_topology.MyDefaultClient"),
        1,
        "redis-unknown-client",
        "sms2fa.W043",
        id="a DefaultClient subclass (may route keys its own way)",
    ),
    pytest.param(
        django_redis(SHARDS, "no.such.module.Client"),
        1,
        "redis-unknown-client",
        "sms2fa.W043",
        id="CLIENT_CLASS that does not import",
    ),
    pytest.param(SENTINEL, None, "redis-sentinel", "sms2fa.W044", id="Sentinel, default wait"),
    pytest.param(SENTINEL, 0, "redis-sentinel", "sms2fa.W044", id="Sentinel, no wait"),
    pytest.param(
        {"BACKEND": REDIS, "LOCATION": [PRIMARY, REPLICA]},
        0,
        "redis-replicas",
        "sms2fa.W044",
        id="Django Redis replicas, no wait",
    ),
    pytest.param(
        django_redis([PRIMARY, REPLICA]),
        None,
        "redis-replicas",
        "sms2fa.W044",
        id="django-redis replicas, default wait",
    ),
]


@pytest.mark.parametrize(("config", "wait", "kind", "check_id"), UNSUPPORTED)
def test_each_unsafe_topology_gets_its_own_id(settings, config, wait, kind, check_id):
    """The exact id, at the level its letter says, without a password in sight."""
    assert limits_topology(config).kind == kind
    use(settings, config, wait_replicas=wait)
    messages = [m for m in run_checks(tags=["sms2fa"]) if m.id in TOPOLOGY_IDS]
    assert [m.id for m in messages] == [check_id]
    (message,) = messages
    assert type(message) is (Error if check_id.startswith("sms2fa.E") else Warning)
    assert "'limits'" in message.msg  # names the alias to fix
    assert message.hint
    text = f"{message.msg} {message.hint} {message}"
    assert PASSWORD not in text
    assert "127.0.0." not in text  # no LOCATION at all: hosts are not the reader's business


def test_the_counts_in_the_messages_are_the_servers_listed(settings):
    use(settings, {"BACKEND": PYMEMCACHE, "LOCATION": [*MEMCACHED, "127.0.0.3:1"]})
    (message,) = check_limits_topology()
    assert "3 servers" in message.msg

    use(settings, {"BACKEND": REDIS, "LOCATION": SHARDS}, wait_replicas=0)
    (message,) = check_limits_topology()
    assert "2 replica(s)" in message.msg


def test_w044_goes_away_once_the_scripts_wait_for_a_replica(settings):
    use(settings, SENTINEL, wait_replicas=0)
    assert topology_ids() == {"sms2fa.W044"}
    use(settings, SENTINEL, wait_replicas=1)
    assert topology_ids() == set()


def test_an_invalid_wait_setting_is_e010_alone(settings):
    """An invalid LIMITS_WAIT_REPLICAS is E010's to report; W044 does not guess."""
    use(settings, SENTINEL, wait_replicas=-1)
    ids = {m.id for m in run_checks(tags=["sms2fa"])}
    assert "sms2fa.E010" in ids
    assert not ids & TOPOLOGY_IDS


def test_only_the_cache_named_by_sms2fa_cache_is_judged(settings):
    """A sharded default cache is the site's business while the limits live elsewhere."""
    settings.CACHES = {
        **settings.CACHES,
        "default": {"BACKEND": PYMEMCACHE, "LOCATION": MEMCACHED},
        "limits": {"BACKEND": REDIS, "LOCATION": PRIMARY},
    }
    settings.SMS2FA = {**settings.SMS2FA, "CACHE": "limits"}
    assert topology_ids() == set()

    settings.SMS2FA = {**settings.SMS2FA, "CACHE": "default"}
    assert topology_ids() == {"sms2fa.E041"}


@pytest.mark.parametrize("sms2fa", [["not", "a", "dict"], {"CACHE": "nope"}], ids=["E001", "E007"])
def test_no_topology_message_without_a_cache_to_judge(settings, sms2fa):
    settings.SMS2FA = sms2fa
    assert check_limits_topology() == []


def test_odd_options_do_not_crash_the_check(settings):
    """OPTIONS that are not a dict, a class object as CLIENT_CLASS: judged, not raised."""
    assert limits_topology(django_redis(SHARDS) | {"OPTIONS": "oops"}).kind == "redis-replicas"
    config = django_redis(SHARDS) | {"OPTIONS": {"CLIENT_CLASS": ShardClient}}
    assert limits_topology(config) == LimitsTopology("redis-sharded", 3)
    use(settings, django_redis(SHARDS) | {"OPTIONS": {"CLIENT_CLASS": CustomClient}})
    (message,) = check_limits_topology()
    assert message.id == "sms2fa.W043"
    assert "'CustomClient'" in message.msg


def test_the_topology_check_is_registered_under_the_caches_tag():
    """``manage.py check --tag caches`` runs it beside Django's own cache checks
    (not run here: they build every cache, and pymemcache is not installed)."""
    from django.core.checks.registry import registry

    assert check_limits_topology in registry.get_checks()
    assert {"caches", "security", "sms2fa"} <= set(check_limits_topology.tags)

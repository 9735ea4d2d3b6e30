from __future__ import annotations

import pytest

from django.core.cache import caches
from django.db import connection

from django_sms2fa import signals
from django_sms2fa.providers import locmem, reset_providers

from .http_support import LoopbackServer


@pytest.fixture(autouse=True)
def _clean_providers():
    """Every test starts with an empty locmem outbox, fresh provider instances
    and an empty cache (limit and lockout counters live there)."""
    locmem.reset()
    reset_providers()
    for cache in caches.all():
        cache.clear()
    yield
    locmem.reset()
    reset_providers()


@pytest.fixture
def outbox() -> list[locmem.SentSms]:
    return locmem.outbox


@pytest.fixture
def user(db, django_user_model):
    return django_user_model.objects.create_user(username="alice", password="correct horse")


@pytest.fixture
def other_user(db, django_user_model):
    return django_user_model.objects.create_user(username="bob", password="battery staple")


@pytest.fixture
def sms2fa_settings(settings):
    """Change SMS2FA keys for one test: ``sms2fa_settings(CODE_LENGTH=8)``."""

    def apply(**changes):
        settings.SMS2FA = {**settings.SMS2FA, **changes}
        return settings.SMS2FA

    return apply


@pytest.fixture
def send_limits(sms2fa_settings):
    """The default send limits (the test settings turn them off)."""
    from django_sms2fa.conf import DEFAULT_LIMITS

    sms2fa_settings(LIMITS=DEFAULT_LIMITS)
    return DEFAULT_LIMITS


@pytest.fixture
def loopback():
    """A real HTTP server on 127.0.0.1 that records requests and counts connections."""
    server = LoopbackServer().start()
    yield server
    server.stop()


def on_postgres() -> bool:
    return connection.vendor == "postgresql"


def pytest_collection_modifyitems(config, items):
    _place_redis_topology_tests(items)
    # Concurrency tests attack row-level races. SQLite has no row locks: it
    # serialises every writer behind one database lock, so the race under test
    # cannot happen there and threads would only see "database is locked".
    if connection.settings_dict["ENGINE"].endswith("postgresql"):
        return
    skip = pytest.mark.skip(
        reason="row-level concurrency needs PostgreSQL (SQLite serialises all writers); "
        "run with SMS2FA_TEST_DB=postgres"
    )
    for item in items:
        if "postgres_only" in item.keywords:
            item.add_marker(skip)


def _place_redis_topology_tests(items) -> None:
    """The Sentinel and Cluster tests start their own ``redis-server`` processes:
    they run once, in the pass whose limits cache is Redis (the PostgreSQL
    pass), not again on SQLite. In CI (``CI`` or
    ``SMS2FA_REQUIRE_REDIS_TOPOLOGIES`` set) a missing ``redis-server`` fails
    them instead of skipping them."""
    import os
    import shutil

    from django.conf import settings

    if getattr(settings, "TEST_CACHE", None) != "redis":
        marker = pytest.mark.skip(
            reason="starts Redis Sentinel/Cluster servers: runs in the Redis pass "
            "(SMS2FA_TEST_DB=postgres, or SMS2FA_TEST_CACHE=redis)"
        )
    elif shutil.which("redis-server") is None and not (
        os.environ.get("CI") or os.environ.get("SMS2FA_REQUIRE_REDIS_TOPOLOGIES")
    ):
        # (In CI nothing is marked: starting the servers fails the tests.)
        marker = pytest.mark.skip(reason="redis-server is not installed (apt install redis-server)")
    else:
        return
    for item in items:
        if "redis_topology" in item.keywords:
            item.add_marker(marker)


@pytest.fixture
def changes():
    """Every message_status_changed sent during the test: (message pk, old, new)."""
    seen: list[tuple[int, str, str]] = []

    def receiver(sender, message, old_status, new_status, **kwargs):
        seen.append((message.pk, old_status, new_status))

    signals.message_status_changed.connect(receiver)
    yield seen
    signals.message_status_changed.disconnect(receiver)

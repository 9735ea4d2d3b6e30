"""The limits in one Redis round trip (docs/performance.md): the Lua scripts of
``django_sms2fa/ratelimit_redis.py`` and the generic cache calls they stand in for.

On the PostgreSQL pass the limits cache is Redis, so every flow runs the
scripts, and the whole suite's limit, lockout and breaker tests hold them to
the generic path's rules. Here: that the scripts are picked on Redis (and not
on another cache), and that the two paths read each other's state — the
admin's unlock and ``lock_state`` use generic calls on keys a script wrote.
"""

from __future__ import annotations

import pytest

from django.conf import settings as django_settings
from django.core.cache import caches

from django_sms2fa import flows, ratelimit
from django_sms2fa.conf import app_settings
from django_sms2fa.exceptions import RateLimited, VerificationLocked
from django_sms2fa.models import Purpose
from django_sms2fa.types import ClientInfo

from .test_send_limits import frozen, mobiles

pytestmark = pytest.mark.django_db


def on_redis() -> bool:
    return django_settings.CACHES[app_settings.CACHE]["BACKEND"].endswith("RedisCache")


def test_the_scripts_are_picked_on_redis_only():
    scripts = ratelimit._scripts()
    if on_redis():
        assert scripts is not None, "Redis is the limits cache, but the generic calls are used"
    else:
        assert scripts is None


def test_a_lock_written_by_a_guess_is_read_and_cleared_by_generic_calls():
    subject = "user:interop"
    threshold = app_settings.LOCKOUT_THRESHOLD
    with frozen():
        for _ in range(threshold):
            ratelimit.settle_wrong(ratelimit.reserve_guess(subject))
        # Read with a generic MGET, whichever path wrote it.
        assert ratelimit.lock_state(subject) == ratelimit.LockState(threshold, 512)
        with pytest.raises(ratelimit.LockRunning):
            ratelimit.reserve_guess(subject, right=True)
        ratelimit.reset_failures(subject)  # the admin's unlock: generic deletes
        assert ratelimit.lock_state(subject) == ratelimit.LockState(0, 0)
        assert ratelimit.reserve_guess(subject, right=True).settled


def test_a_right_guess_clears_the_count_in_its_own_round_trip():
    subject = "user:right"
    for _ in range(3):
        ratelimit.settle_wrong(ratelimit.reserve_guess(subject))
    assert ratelimit.lock_state(subject).failures == 3
    guess = ratelimit.reserve_guess(subject, right=True)
    assert guess.settled
    assert ratelimit.lock_state(subject) == ratelimit.LockState(0, 0)
    ratelimit.settle_right(guess)  # already settled: nothing more happens
    ratelimit.release_guess(guess)
    assert ratelimit.lock_state(subject) == ratelimit.LockState(0, 0)


def test_a_cooldown_taken_by_the_script_is_seen_by_the_generic_take():
    rate = ratelimit.Rate(1, 30)
    with frozen():
        ratelimit.guard_send(lock_subject="phone:x", breaker_prefix=None, takes=[])
        # Both paths keep the cooldown under the same key and format (ms).
        ratelimit.take("phone", "cool-interop", [rate])
        with pytest.raises(RateLimited) as refused:
            ratelimit.take("phone", "cool-interop", [rate])
    assert refused.value.context["retry_after"] == 30


def test_a_refusal_by_a_later_limit_leaves_nothing_taken(sms2fa_settings):
    """The phone's cooldown is checked first and passes; the IP refuses: the
    cooldown must not stay taken (the next number from another IP passes)."""
    sms2fa_settings(LIMITS={"phone": ["1/30s"], "ip": ["1/h"]})
    first, second = mobiles(2)
    with frozen():
        ticket = ratelimit.guard_send(
            lock_subject="phone:a", breaker_prefix=None, takes=[("phone", first), ("ip", "ip-1")]
        )
        assert len(ticket.hits) == 2
        with pytest.raises(RateLimited) as refused:
            ratelimit.guard_send(
                lock_subject="phone:b",
                breaker_prefix=None,
                takes=[("phone", second), ("ip", "ip-1")],
            )
        assert refused.value.context["limit"] == "ip"
        ratelimit.guard_send(
            lock_subject="phone:b", breaker_prefix=None, takes=[("phone", second), ("ip", "ip-2")]
        )


def test_the_lockout_refuses_a_send_before_any_limit_is_taken(sms2fa_settings):
    sms2fa_settings(LIMITS={"ip": ["1/h"]})
    subject = "user:locked-send"
    with frozen():
        for _ in range(app_settings.LOCKOUT_THRESHOLD):
            ratelimit.record_failure(subject)
        with pytest.raises(VerificationLocked):
            ratelimit.guard_send(
                lock_subject=subject, breaker_prefix=None, takes=[("ip", "ip-locked")]
            )
        # The IP's single send was not spent by the refused one.
        ratelimit.guard_send(
            lock_subject="user:other", breaker_prefix=None, takes=[("ip", "ip-locked")]
        )


def test_a_flow_without_a_request_has_no_ip_limit(sms2fa_settings, outbox):
    """No client at all (a management command, a task) is not one shared IP:
    ``limit_key(None)`` is no per-IP count, on either path."""
    sms2fa_settings(LIMITS={"ip": ["2/h"]})
    for number in mobiles(4):
        flows.request_challenge(phone=number, purpose=Purpose.VERIFY_PHONE)
    assert len(outbox) == 4
    # ...while a request without an address shares one bucket.
    numbers = mobiles(3, base="+46703")
    flows.request_challenge(
        phone=numbers[0], purpose=Purpose.VERIFY_PHONE, client=ClientInfo(ip="")
    )
    flows.request_challenge(
        phone=numbers[1], purpose=Purpose.VERIFY_PHONE, client=ClientInfo(ip="")
    )
    with pytest.raises(RateLimited):
        flows.request_challenge(
            phone=numbers[2], purpose=Purpose.VERIFY_PHONE, client=ClientInfo(ip="")
        )


def tag(key: str) -> str:
    return key[key.index("{") : key.index("}") + 1]


def test_keys_carry_one_hash_tag_named_after_what_they_count():
    """Each key has one ``{tag}`` (a Redis Cluster slot), hashed, made of what
    the key counts: the keys one rule checks and takes together share it, and
    different subjects, scopes and prefixes get different ones."""
    key = ratelimit._key("fail-n", "user:1")
    assert key.startswith("sms2fa:{") and ":fail-n:" in key
    made = caches[app_settings.CACHE].make_key(key)
    assert made.count("{") == 1 and made.count("}") == 1
    lockout = {
        tag(ratelimit._key(kind, "user:1")) for kind in ("fail-n", "fail-s", "fail-t", "gate")
    }
    assert len(lockout) == 1 and tag(ratelimit._key("fail-n", "user:2")) not in lockout
    rate = {
        tag(ratelimit._key("cool", "phone", 30, "+46701")),
        tag(ratelimit._key("win", "phone", 3600, 12, "+46701")),
        tag(ratelimit._key("win", "phone", 86400, 1, "+46701")),
    }
    assert len(rate) == 1
    assert tag(ratelimit._key("win", "ip", 3600, 12, "+46701")) not in rate
    phone = "+46701234567"
    prefix = ratelimit.number_prefix(phone)
    breaker = {
        tag(ratelimit._key("pump-open", "prefix", prefix)),
        tag(ratelimit._key("pump-sent", "prefix", prefix, 7)),
        tag(ratelimit._key("pump-ok", "prefix", prefix, 8)),
        tag(ratelimit._key("pump-known", phone)),  # by the number's prefix
    }
    assert len(breaker) == 1
    assert tag(ratelimit._key("pw-n", "password", "alice")) == tag(
        ratelimit._key("pw-lock", "password", "alice")
    )
    # Hashed: no phone number, subject or prefix in clear.
    for secret in (phone, prefix, "alice", "user:1"):
        assert secret not in ratelimit._key("pump-known", phone)
        assert secret not in ratelimit._key("pw-n", "password", "alice")


def test_the_scripts_run_on_django_redis_too(settings, sms2fa_settings):
    """django-redis's cache (default client) gets the scripts as well: the same
    limits, exact, in one round trip — on the Redis the suite already uses."""
    if not on_redis():
        pytest.skip("needs Redis; run with SMS2FA_TEST_DB=postgres")
    pytest.importorskip("django_redis")
    location = django_settings.CACHES[app_settings.CACHE]["LOCATION"]
    settings.CACHES = {
        **settings.CACHES,
        "django-redis": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": location,
            "KEY_PREFIX": "django-redis-limits",
        },
    }
    sms2fa_settings(CACHE="django-redis", LIMITS={"phone": ["2/h"]})
    caches["django-redis"].clear()
    assert ratelimit._scripts() is not None
    with frozen():
        for _ in range(2):
            ratelimit.guard_send(
                lock_subject="phone:dr", breaker_prefix=None, takes=[("phone", "dr")]
            )
        with pytest.raises(RateLimited) as refused:
            ratelimit.guard_send(
                lock_subject="phone:dr", breaker_prefix=None, takes=[("phone", "dr")]
            )
        assert refused.value.context["limit"] == "phone"
        subject = "user:django-redis"
        for _ in range(app_settings.LOCKOUT_THRESHOLD):
            ratelimit.settle_wrong(ratelimit.reserve_guess(subject))
        # The generic read (django-redis's own get_many) sees the script's lock.
        assert ratelimit.lock_state(subject) == ratelimit.LockState(
            app_settings.LOCKOUT_THRESHOLD, 512
        )
        with pytest.raises(ratelimit.LockRunning):
            ratelimit.reserve_guess(subject, right=True)


def test_a_send_no_provider_took_gives_its_breaker_count_back(outbox):
    """The breaker counts a send to a never-verified number with the limits,
    before the provider is called; when no provider takes the SMS, that count
    goes back — a provider outage must not look like pumping."""
    from django_sms2fa.exceptions import DeliveryFailed, ProviderUnavailable
    from django_sms2fa.providers import locmem

    sent_count = []

    def count_after(send) -> None:
        number = mobiles(1, base="+46704")[0]
        send(number)
        prefix = ratelimit.number_prefix(number)
        bucket = ratelimit._bucket(ratelimit.time.time())
        key = ratelimit._key("pump-sent", "prefix", prefix, bucket)
        sent_count.append(caches[app_settings.CACHE].get(key) or 0)
        caches[app_settings.CACHE].delete(key)

    with frozen():
        count_after(lambda n: flows.request_challenge(phone=n, purpose=Purpose.VERIFY_PHONE))
        locmem.fail_next(ProviderUnavailable())

        def failing(number: str) -> None:
            with pytest.raises(DeliveryFailed):
                flows.request_challenge(phone=number, purpose=Purpose.VERIFY_PHONE)

        count_after(failing)
    assert sent_count == [1, 0]
